"""Streams written by nnr decode in NNCodec 2.1.3 (the reference software) to the same bits.

nnr encodes a matrix of inputs and options; NNCodec's ``decompress`` decodes all of them in one
subprocess (tests/peer/nncodec_driver.py in the environment of tests/peer/setup_peer.sh); every
tensor NNCodec returns must equal ``nnr.decode`` of the same bytes bit for bit (names, shapes,
dtypes, bytes). The inputs are real weights (all-MiniLM-L6-v2 slices from the vectors' source
files) and seeded random tensors; the matrix covers DQ on/off x scan orders 0-4, codebook on and
auto, int32 tensors, odd shapes ([N,1], [1,N], 1-D, 3-D, 4-D, 5-D), NDUs larger than one 32 KiB
unit, row skipping, other qp densities, CABAC options and a 32-tensor model. All at profile 1:
NNCodec 2.1.3 writes and reads edition 2 only.

A first test checks the peer itself: the driver reproduces the decoded output of every NNCodec
2.1.3 conformance vector (including the incremental sequences), so that a failure below is
nnr's, not the harness's.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import nnr

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


@lru_cache(maxsize=None)
def _source(vector_id: str) -> dict[str, np.ndarray]:
    with np.load(VECTORS / f"{vector_id}.source.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _minilm_weight(rows: int = 72) -> np.ndarray:
    """MiniLM layer-4 key weight, 384 columns: 72 rows = 9/5/3/2 block rows of 8/16/32/64."""
    return _source("p1_scan4_dq1_minilm")["encoder.layer.4.attention.self.key.weight"][:rows]


def _minilm_bias() -> np.ndarray:
    return _source("p1_multi32_minilm")["encoder.layer.0.attention.self.query.bias"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _normal(seed: int, shape: tuple[int, ...], scale: float = 0.05) -> np.ndarray:
    return (_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def real_layer() -> dict[str, np.ndarray]:
    return {"attn.key.weight": _minilm_weight(), "attn.query.bias": _minilm_bias(),
            "conv.weight": _normal(1, (24, 8, 3, 3))}


def int_tensors() -> dict[str, np.ndarray]:
    rng = _rng(2)
    return {"counts": rng.integers(-300, 300, (12, 20)).astype(np.int32),
            "steps": np.arange(-7, 30, 3, dtype=np.int32),
            "fc.weight": _normal(3, (16, 40))}


def odd_shapes() -> dict[str, np.ndarray]:
    weight = _minilm_weight(64)
    return {"col": weight[:37, :1].copy(), "row": weight[:1, :53].copy(),
            "vec": _normal(4, (17,)), "one": _normal(5, (1,)),
            "conv": _normal(6, (6, 4, 3, 3)), "cube": _normal(7, (5, 7, 9)),
            "five": _normal(8, (3, 2, 4, 2, 5)), "wide": weight[:3, :].copy()}


def solid_shapes() -> dict[str, np.ndarray]:
    """3-D / 4-D / 5-D tensors with more than one row and column (fine for block scans)."""
    return {"conv": _normal(9, (40, 8, 3, 3)), "cube": _normal(10, (20, 7, 9)),
            "five": _normal(11, (18, 2, 4, 2, 5)), "bias": _normal(12, (40,), 0.01)}


def large() -> dict[str, np.ndarray]:
    """NDUs far larger than 32767 bytes: 4-byte unit sizes, many entry points."""
    emb = _source("p1_large_1M_scan2_minilm")["embeddings.word_embeddings.weight"]
    return {"embeddings.weight": emb[:600], "noise": _normal(13, (256, 300), 0.1)}


def zero_rows() -> dict[str, np.ndarray]:
    w = _minilm_weight(96).copy()
    w[::3] = 0.0
    w[40:60] = 0.0
    return {"w": w, "allzero": np.zeros((20, 30), np.float32), "b": _normal(14, (96,), 0.01)}


def minilm_model() -> dict[str, np.ndarray]:
    return dict(_source("p1_multi32_minilm"))


def constant_tensors() -> dict[str, np.ndarray]:
    """Tensors with one distinct value: one-entry codebooks (nothing coded for them)."""
    return {"const.weight": np.full((20, 30), 0.25, np.float32),
            "zero.weight": np.zeros((24, 9), np.float32),
            "const.bias": np.full(10, -0.5, np.float32)}


def block_model() -> dict[str, np.ndarray]:
    """A conv layer with bias, batch-norm and local scaling, and a linear layer with bias."""
    rng = np.random.default_rng(7)
    w = _minilm_weight()[:40].reshape(40, 16, 3, 8).copy()   # real weights in a conv shape
    c = w.shape[0]
    vec = lambda s, o=0.0: (rng.standard_normal(c) * s + o).astype(np.float32)  # noqa: E731
    return {"conv.weight": w, "conv.bias": vec(0.01), "bn.weight": vec(0.1, 1.0),
            "bn.bias": vec(0.1), "bn.running_mean": vec(0.1), "bn.running_var": vec(0.05, 1.0),
            "conv.weight_scaling": vec(0.01, 1.0),
            "fc.weight": (rng.standard_normal((70, 96)) * 0.05).astype(np.float32),
            "fc.bias": (rng.standard_normal(70) * 0.01).astype(np.float32)}


BLOCKS = {"conv.weight": {"bias": "conv.bias", "bn.gamma": "bn.weight", "bn.beta": "bn.bias",
                          "bn.mean": "bn.running_mean", "bn.var": "bn.running_var",
                          "weight.ls": "conv.weight_scaling"},
          "fc.weight": {"bias": "fc.bias"}}


@dataclass(frozen=True)
class Case:
    id: str
    tensors: Callable[[], dict[str, np.ndarray]]
    options: dict = field(default_factory=dict)


def _cases() -> list[Case]:
    cases = [Case(f"real_dq{int(dq)}_scan{scan}", real_layer,
                  {"dq": dq, "scan_order": scan, "profile": 1})
             for dq in (True, False) for scan in range(5)]
    cases += [
        Case("defaults", real_layer),
        Case("codebook_on_dq0", real_layer, {"codebook": "on", "dq": False}),
        Case("codebook_on_dq1", real_layer, {"codebook": "on", "dq": True}),
        Case("codebook_auto_dq1", real_layer, {"codebook": "auto", "dq": True}),
        Case("codebook_on_scan1", real_layer, {"codebook": "on", "dq": False, "scan_order": 1}),
        Case("int32_dq1", int_tensors, {"dq": True}),
        Case("int32_dq0_scan1", int_tensors, {"dq": False, "scan_order": 1}),
        Case("odd_shapes_dq1", odd_shapes, {"dq": True, "scan_order": 0}),
        Case("odd_shapes_dq0", odd_shapes, {"dq": False, "scan_order": 0}),
        Case("nd_shapes_scan1_dq1", solid_shapes, {"dq": True, "scan_order": 1}),
        Case("nd_shapes_scan3_dq0", solid_shapes, {"dq": False, "scan_order": 3}),
        Case("large_scan0_dq1", large, {"dq": True, "scan_order": 0}),
        Case("large_scan2_dq0", large, {"dq": False, "scan_order": 2, "qp": -44}),
        Case("rowskip_scan0_dq1", zero_rows, {"row_skip": True, "dq": True}),
        Case("rowskip_scan0_dq0", zero_rows, {"row_skip": True, "dq": False}),
        Case("rowskip_scan1_dq0", zero_rows, {"row_skip": True, "dq": False, "scan_order": 1}),
        Case("qd1", real_layer, {"qp_density": 1, "qp": -20, "nonweight_qp": -40}),
        Case("qd3", real_layer, {"qp_density": 3, "qp": -44}),
        Case("qp_per_tensor", real_layer, {"qp_per_tensor": {"conv.weight": -30}}),
        Case("no_param_opt", real_layer, {"param_opt": False}),
        Case("cabac_unary4", real_layer, {"cabac_unary_length_minus1": 4}),
        Case("minilm_32_tensors", minilm_model, {"qp": -36}),
        Case("codebook_size_one", constant_tensors, {"codebook": "on"}),
        Case("codebook_size_one_scan1", constant_tensors, {"codebook": "on", "scan_order": 1}),
        Case("blocks_dq1_scan1", block_model, {"blocks": BLOCKS, "dq": True, "scan_order": 1}),
        Case("blocks_dq0_scan2", block_model, {"blocks": BLOCKS, "dq": False, "scan_order": 2}),
        Case("rowskip_scan1_dq1", zero_rows, {"row_skip": True, "dq": True, "scan_order": 1}),
        Case("rd_trellis_scan1", real_layer, {"lambda_scale": 1.0, "dq": True, "scan_order": 1}),
        Case("rdoq_scan0", real_layer, {"lambda_scale": 1.0, "dq": False}),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def cross(nncodec, tmp_path_factory):
    """Encode every case with nnr, decode all streams with NNCodec in one process.

    Returns ``{case id: (stream bytes or the exception nnr.encode raised, NNCodec result)}``.
    """
    work = tmp_path_factory.mktemp("nncodec_cross")
    encoded: dict[str, object] = {}
    jobs = []
    for case in CASES:
        try:
            data = nnr.encode(case.tensors(), **case.options)
        except Exception as exc:  # reported by the case's test
            encoded[case.id] = exc
            continue
        encoded[case.id] = data
        (work / f"{case.id}.nnr").write_bytes(data)
        jobs.append({"index": case.id, "streams": [str(work / f"{case.id}.nnr")],
                     "out": str(work / f"{case.id}.nncodec.npz"), "sequence": False})
    peer = nncodec.decode(jobs, work) if jobs else {}
    return {c.id: (encoded[c.id], peer.get(c.id), work / f"{c.id}.nncodec.npz") for c in CASES}


def _assert_same(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs), "tensor names differ"
    for name, expected in theirs.items():
        got = np.asarray(ours[name])
        assert got.dtype == expected.dtype, f"{name}: nnr {got.dtype}, NNCodec {expected.dtype}"
        assert got.shape == expected.shape, f"{name}: nnr {got.shape}, NNCodec {expected.shape}"
        diff = int(np.count_nonzero(got != expected))
        assert np.ascontiguousarray(got).tobytes() == expected.tobytes(), \
            f"{name}: {diff} of {got.size} values differ from NNCodec's decode"


def _assert_case_exercised(case: Case, data: bytes) -> None:
    """The stream really uses what the case is about (so a pass means something)."""
    opts = case.options
    info = nnr.inspect(data)
    assert info.profile == opts.get("profile", 1)
    floats = [t for t in info.tensors if not str(t.payload_type).upper().endswith("INT")]
    if "scan_order" in opts:
        assert all(t.scan_order == opts["scan_order"] for t in floats if len(t.shape) > 1)
    if opts.get("codebook") == "on":
        assert all(t.codebook for t in floats)
    if "codebook" not in opts:
        assert not any(t.codebook for t in floats)
        if "dq" in opts:
            assert all(bool(t.dq) == opts["dq"] for t in floats)
        if "qp" in opts and "qp_per_tensor" not in opts:
            assert all(t.qp == opts["qp"] for t in floats if len(t.shape) > 1)
    if opts.get("row_skip") and not (opts.get("dq", True) and opts.get("scan_order", 0)):
        assert any("row" in tool for tool in info.tools), info.tools
    if opts.get("blocks"):
        assert "block" in info.tools
    if case.id.startswith("large"):
        assert max(u.size for u in info.units) > 32767


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_nncodec_decodes_nnr_stream_identically(case, cross):
    data, peer, out = cross[case.id]
    if isinstance(data, Exception):
        pytest.fail(f"nnr.encode failed: {type(data).__name__}: {data}", pytrace=False)
    assert peer is not None and peer["status"] == "ok", \
        f"NNCodec cannot decode nnr's stream: {peer and peer.get('error')}"
    with np.load(out, allow_pickle=False) as npz:
        theirs = {k: npz[k] for k in npz.files}
    _assert_same(dict(nnr.decode(data)), theirs)
    _assert_case_exercised(case, data)
    source = case.tensors()
    assert sorted(theirs) == sorted(source)
    for name, tensor in source.items():
        assert theirs[name].shape == tensor.shape, name
        if tensor.dtype.kind == "i":
            assert np.array_equal(theirs[name], tensor), f"{name}: integers are coded losslessly"


# --------------------------------------------------------------------- the harness itself

def _nncodec_vectors() -> list[dict]:
    with open(VECTORS / "manifest.json") as f:
        return [v for v in json.load(f)["vectors"] if v["producer"] == "nncodec 2.1.3"]


@pytest.fixture(scope="module")
def driver_on_vectors(nncodec, tmp_path_factory):
    work = tmp_path_factory.mktemp("nncodec_vectors")
    jobs = []
    for v in _nncodec_vectors():
        inc = v.get("incremental")
        jobs.append({"index": v["id"], "streams": [str(VECTORS / s) for s in v["streams"]],
                     "out": str(work / f"{v['id']}.npz"), "sequence": inc is not None,
                     "hdsp": bool(inc and inc.get("hdsp"))})
    return nncodec.decode(jobs, work), work


def test_driver_reproduces_nncodec_vectors(driver_on_vectors):
    results, work = driver_on_vectors
    for v in _nncodec_vectors():
        assert results[v["id"]]["status"] == "ok", (v["id"], results[v["id"]])
        with np.load(work / f"{v['id']}.npz") as ours, \
                np.load(VECTORS / v["decoded"]) as expected:
            assert sorted(ours.files) == sorted(expected.files), v["id"]
            for key in expected.files:
                assert ours[key].dtype == expected[key].dtype, (v["id"], key)
                assert ours[key].tobytes() == expected[key].tobytes(), (v["id"], key)


def test_driver_harness_survives_a_crash(nncodec, tmp_path):
    """If NNCodec's C++ core kills the process, only the job that was running is lost."""
    fake = tmp_path / "fake_driver.py"
    fake.write_text(
        "import json, os, sys\n"
        "jobs = json.load(open(sys.argv[2]))\n"
        "out = open(sys.argv[3], 'a')\n"
        "for job in jobs:\n"
        "    out.write(json.dumps({'job': job['index'], 'status': 'start'}) + '\\n'); out.flush()\n"
        "    if job['index'] == 'boom':\n"
        "        os.abort()\n"
        "    out.write(json.dumps({'job': job['index'], 'status': 'ok'}) + '\\n'); out.flush()\n")
    driver = type(nncodec)(Path(sys.executable))
    driver.script = fake
    jobs = [{"index": i, "streams": [], "out": ""} for i in ("a", "boom", "b", "c")]
    results = driver.decode(jobs, tmp_path)
    assert {k: v["status"] for k, v in results.items()} == {
        "a": "ok", "boom": "crashed", "b": "ok", "c": "ok"}
