"""Integer-aligned (bit-depth) quantization, ``EncodeConfig.bit_depth``: NNCodec's
``int_quant_bw``. Per tensor the qp whose step maps the 99.95th percentile of |w| onto the
largest ``b``-bit level, levels clipped to the signed (or, without negative values, unsigned)
``b``-bit range, 1-D tensors at least 8 bits, all-zero tensors qp 0, no DQ.

The NNCodec checks run NNCodec 2.1.3's own encoder (``nnc.compress(..., int_quant_bw=b)``) in
the peer environment (tests/peer/setup_peer.sh; skipped with the reason when it cannot be
built) on the real Fashion-MNIST CNN and on edge-case tensors: the qps must be NNCodec's, and
with ``use_dq=False`` the streams must be byte for byte NNCodec's.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import nnr
from nnr.errors import ConfigError
from nnr.quantization import step_size
from nnr.quantization.lowbit import bit_depth_qp, nncodec_percentile
from tests.conformance.conftest import nncodec  # noqa: F401  (the NNCodec peer fixture)

REPO = Path(__file__).resolve().parents[2]
FASHION = REPO / "benchmarks" / "eval" / "fashion_cnn.npz"


def edge_tensors() -> dict[str, np.ndarray]:
    """Tensors that take every branch of NNCodec's rule: a zero 99.95th percentile (max|w|
    used instead), one and two values, non-negative (unsigned range), tiny and huge scales,
    all zero, heavy tails, and 1-D tensors (at least 8 bits)."""
    rng = np.random.default_rng(5)
    sparse = np.zeros((40, 50), np.float32)
    sparse[3, 7], sparse[10, 1] = 0.3, -0.01
    return {"sparse.weight": sparse, "one": np.array([0.37], np.float32),
            "two": np.array([-0.2, 0.5], np.float32),
            "nonneg.weight": np.abs(rng.standard_normal((20, 30))).astype(np.float32),
            "tiny.weight": (rng.standard_normal((8, 9)) * 1e-6).astype(np.float32),
            "big.weight": (rng.standard_normal((8, 9)) * 1e4).astype(np.float32),
            "zero.bias": np.zeros(5, np.float32),
            "laplace.weight": rng.laplace(0, 0.02, (33, 47)).astype(np.float32),
            "b": (rng.standard_normal(33) * 0.1).astype(np.float32),
            "var": rng.uniform(0.5, 2.0, 33).astype(np.float32)}


def fashion() -> dict[str, np.ndarray]:
    if not FASHION.exists():
        pytest.skip(f"{FASHION} is missing")
    with np.load(FASHION) as z:
        return {k: z[k] for k in z.files}


def levels(data: bytes) -> dict[str, np.ndarray]:
    """The integer levels of every float tensor (decoded value / step, exact)."""
    qps = {t.name: t.qp for t in nnr.inspect(data).tensors}
    out = {}
    for name, value in nnr.decode(data).items():
        k = np.rint(value.astype(np.float64) / float(step_size(qps[name], 2)))
        assert np.array_equal((k.astype(np.float32) * step_size(qps[name], 2)), value), name
        out[name] = k.astype(np.int64)
    return out


# ------------------------------------------------------------------------ levels and qps

@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 12])
def test_levels_fit_the_bit_depth(bits):
    t = edge_tensors()
    data = nnr.encode(t, bit_depth=bits)
    info = {x.name: x for x in nnr.inspect(data).tensors}
    for name, k in levels(data).items():
        b = bits if t[name].ndim > 1 else max(bits, 8)
        if (t[name] < 0).any():
            lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
        else:
            lo, hi = 0, (1 << b) - 1
        assert lo <= k.min() and k.max() <= hi, (name, b, k.min(), k.max())
        assert not info[name].dq
        if t[name].any():
            assert info[name].qp == bit_depth_qp(t[name], bits, 2, t[name].ndim > 1)
            # the range is used: the 99.95th percentile lands near the largest level
            assert k.max() >= hi // 2 or -k.min() >= hi // 2, (name, k.min(), k.max())
        else:
            assert info[name].qp == 0 and not k.any()


def test_real_cnn_8_bits_fill_int8():
    t = fashion()
    data = nnr.encode(t, bit_depth=8)
    for name, k in levels(data).items():
        if t[name].ndim > 1:
            assert -128 <= k.min() and k.max() <= 127
            assert max(-k.min(), k.max()) >= 100, name
    # one step of qp more would not fit: the qp is the finest whose range holds the tensor
    w = t["fc1.weight"]
    qp = nnr.inspect(data).tensors[[x.name for x in nnr.inspect(data).tensors].index(
        "fc1.weight")].qp
    assert np.percentile(np.abs(w), 99.95) / float(step_size(qp, 2)) == pytest.approx(127, rel=0.12)


def test_dq_is_off_and_qp_options_are_unused():
    t = edge_tensors()
    base = nnr.encode(t, bit_depth=6)
    assert nnr.encode(t, bit_depth=6, dq=True) == base
    assert nnr.encode(t, bit_depth=6, dq=False, qp=-10, nonweight_qp=-60) == base
    assert nnr.encode(t, bit_depth=6, threads=1) == nnr.encode(t, bit_depth=6, threads=2)


def test_percentile_is_numpys():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 1999, 2000, 2001, 10007):
        x = (rng.standard_normal(n) * 0.1).astype(np.float32)
        assert nncodec_percentile(x) == pytest.approx(float(np.percentile(np.abs(x), 99.95)),
                                                      rel=1e-6)


def test_codebook_and_blocks():
    t = edge_tensors()
    for mode in ("on", "auto"):
        data = nnr.encode(t, bit_depth=4, codebook=mode)
        out = nnr.decode(data)
        plain = nnr.decode(nnr.encode(t, bit_depth=4))
        for name in t:          # the same levels, whichever way they are coded
            np.testing.assert_allclose(out[name], plain[name], rtol=1e-6, atol=0)
    rng = np.random.default_rng(1)
    blk = {"conv.weight": (rng.standard_normal((6, 4, 3, 3)) * 0.1).astype(np.float32),
           "conv.bias": (rng.standard_normal(6) * 0.01).astype(np.float32)}
    data = nnr.encode(blk, bit_depth=5, blocks={"conv.weight": {"bias": "conv.bias"}})
    assert "block" in nnr.inspect(data).tools
    k = levels(data)
    assert -16 <= k["conv.weight"].min() and k["conv.weight"].max() <= 15
    assert -128 <= k["conv.bias"].min() and k["conv.bias"].max() <= 127


@pytest.mark.parametrize("options, match", [
    ({"bit_depth": 1}, "2..31"), ({"bit_depth": 32}, "2..31"), ({"bit_depth": True}, "2..31"),
    ({"bit_depth": 8.0}, "2..31"),
    ({"bit_depth": 8, "qp_per_tensor": {"w": -30}}, "qp_per_tensor"),
    ({"bit_depth": 8, "stochastic": "binary"}, "give one"),
    ({"bit_depth": 8, "low_rank": 0.1}, "low_rank"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        nnr.encode({"w": np.ones((2, 3), np.float32)}, **options)


def test_search_refuses_bit_depth():
    t = {"w": np.ones((4, 4), np.float32)}
    with pytest.raises(ConfigError, match="qp_per_tensor"):
        nnr.encode_for_size(t, 1000, bit_depth=8)


# ---------------------------------------------------------------------------- the CLI

def test_cli_bit_depth(nnr_cli, tmp_path):
    t = edge_tensors()
    src = tmp_path / "t.npz"
    np.savez(src, **t)
    out = tmp_path / "t.nnr"
    r = nnr_cli("encode", src, "-o", out, "--bit-depth", "6")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == nnr.encode(t, bit_depth=6)
    for args, text in [(["--bit-depth", "0"], "2..31"),
                       (["--bit-depth", "8", "--stochastic", "ternary"], "give one"),
                       (["--bit-depth", "8", "--qp-per-tensor", "b=-40"], "qp_per_tensor"),
                       (["--bit-depth", "8", "--size", "1000"], "--max-drop or --size"),
                       (["--bit-depth", "8", "--lossless"], "--lossless")]:
        r = nnr_cli("encode", src, "-o", tmp_path / "x.nnr", *args)
        assert r.returncode == 1, (args, r.stderr)
        assert text in r.error_line(), r.stderr
    r = nnr_cli("encode", src, "-o", tmp_path / "x.nnr", "--bit-depth", "eight")
    assert r.returncode == 2 and "--bit-depth" in r.error_line()


# ---------------------------------------------------------------- NNCodec 2.1.3 itself

_PEER_ENCODE = """
import contextlib, io, json, sys
sys.path.insert(0, sys.argv[1])
import nncodec_driver  # noqa: F401  (stubs torch / tensorflow when they are missing)
import numpy as np
from nncodec.nnc import compress
for job in json.load(open(sys.argv[2])):
    with np.load(job["npz"]) as z:
        params = {k: z[k] for k in z.files}
    with contextlib.redirect_stdout(io.StringIO()):
        stream = compress(params, bitstream_path=None, return_bitstream=True, **job["options"])
    open(job["out"], "wb").write(bytes(stream))
"""


@pytest.fixture(scope="module")
def nncodec_streams(nncodec, tmp_path_factory):
    """NNCodec 2.1.3's streams of the Fashion-MNIST CNN and the edge tensors with
    ``int_quant_bw``: {(model, bits, qp_density, dq): stream bytes}."""
    work = tmp_path_factory.mktemp("nncodec_bit_depth")
    models = {"fashion": fashion(), "edge": edge_tensors()}
    for name, t in models.items():
        np.savez(work / f"{name}.npz", **t)
    settings = [("fashion", 8, 2, False), ("fashion", 6, 2, False), ("fashion", 8, 2, True),
                ("fashion", 4, 2, True), ("edge", 8, 2, False), ("edge", 3, 2, False),
                ("edge", 12, 3, False), ("edge", 31, 2, False), ("edge", 6, 1, True)]
    jobs = [{"npz": str(work / f"{m}.npz"), "out": str(work / f"{m}_{b}_{qd}_{int(dq)}.nnc"),
             "options": {"int_quant_bw": b, "qp_density": qd, "use_dq": dq}}
            for m, b, qd, dq in settings]
    (work / "jobs.json").write_text(json.dumps(jobs))
    (work / "encode.py").write_text(_PEER_ENCODE)
    proc = subprocess.run([str(nncodec.python), str(work / "encode.py"),
                           str(REPO / "tests" / "peer"), str(work / "jobs.json")],
                          capture_output=True, text=True, timeout=900, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return models, {s: Path(j["out"]).read_bytes() for s, j in zip(settings, jobs)}


def test_qps_and_bytes_equal_nncodec(nncodec_streams):
    models, streams = nncodec_streams
    for (model, bits, qd, dq), theirs in streams.items():
        ours = nnr.encode(models[model], bit_depth=bits, qp_density=qd, init_estimate_limit=0)
        their_qps = {t.name: t.qp for t in nnr.inspect(theirs).tensors}
        our_qps = {t.name: t.qp for t in nnr.inspect(ours).tensors}
        assert our_qps == their_qps, (model, bits, qd, dq)
        if not dq:
            assert ours == theirs, (model, bits, qd, "bytes differ from NNCodec's")


def test_nncodec_with_dq_breaks_the_bit_depth(nncodec_streams):
    """Why nnr codes bit-depth tensors without DQ: NNCodec clips its DQ levels after the
    trellis, and the decoded multipliers then leave the range (129 for int8 weights)."""
    models, streams = nncodec_streams
    theirs = streams[("fashion", 8, 2, True)]
    assert max(int(np.abs(k).max()) for n, k in levels(theirs).items()
               if models["fashion"][n].ndim > 1) > 127
    assert max(int(np.abs(k).max()) for n, k in levels(nnr.encode(models["fashion"],
                                                                  bit_depth=8)).items()
               if models["fashion"][n].ndim > 1) <= 128


def test_nncodec_decodes_nnr_bit_depth_streams(nncodec, tmp_path):
    rng = np.random.default_rng(2)
    blk = {"conv.weight": (rng.standard_normal((40, 8, 3, 3)) * 0.1).astype(np.float32),
           "conv.bias": (rng.standard_normal(40) * 0.01).astype(np.float32),
           "fc.weight": (rng.standard_normal((70, 96)) * 0.05).astype(np.float32)}
    cases = {"scan1": (blk, {"bit_depth": 6, "scan_order": 1}),
             "block": (blk, {"bit_depth": 4, "blocks": {"conv.weight": {"bias": "conv.bias"}}}),
             "codebook": (edge_tensors(), {"bit_depth": 5, "codebook": "on"}),
             "rdoq": (edge_tensors(), {"bit_depth": 8, "lambda_scale": 1.0})}
    jobs, data = [], {}
    for cid, (t, opts) in cases.items():
        data[cid] = nnr.encode(t, **opts)
        (tmp_path / f"{cid}.nnr").write_bytes(data[cid])
        jobs.append({"index": cid, "streams": [str(tmp_path / f"{cid}.nnr")],
                     "out": str(tmp_path / f"{cid}.npz"), "sequence": False})
    results = nncodec.decode(jobs, tmp_path)
    for cid in cases:
        assert results[cid]["status"] == "ok", results[cid]
        ours = nnr.decode(data[cid])
        with np.load(tmp_path / f"{cid}.npz") as theirs:
            assert sorted(theirs.files) == sorted(ours)
            for name in theirs.files:
                assert theirs[name].tobytes() == np.asarray(ours[name]).tobytes(), (cid, name)
