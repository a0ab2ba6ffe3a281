"""Stochastic binary and ternary quantization (``EncodeConfig.stochastic``): weights (two or
more dimensions) become {-d, +d} or {-d, 0, +d} with one step d per tensor, by unbiased
stochastic rounding drawn from ``seed`` and the tensor's name, coded without DQ; 1-D tensors
keep the usual quantization. The streams are ordinary NNR streams: NNCodec 2.1.3 decodes them
to exactly nnr's decode (skipped with the reason when its environment cannot be built).
"""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr.errors import ConfigError
from nnr.quantization import step_size, step_size_double
from nnr.quantization.lowbit import nearest_qp, stochastic_levels, stochastic_scale, tensor_rng
from tests.conformance.conftest import nncodec  # noqa: F401  (the NNCodec peer fixture)

MODES = ("binary", "ternary")
ALLOWED = {"binary": {-1, 1}, "ternary": {-1, 0, 1}}


def model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv.weight": (rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32),
            "conv.bias": (rng.standard_normal(16) * 0.01).astype(np.float32),
            "fc.weight": rng.laplace(0, 0.03, (40, 96)).astype(np.float32),
            "fc.bias": (rng.standard_normal(40) * 0.02).astype(np.float32),
            "steps": np.arange(-3, 9, dtype=np.int32)}


def weight_levels(data: bytes, names) -> dict[str, tuple[np.ndarray, float]]:
    """Levels (decoded / step, checked exact) and step of the named tensors."""
    qps = {t.name: t.qp for t in nnr.inspect(data).tensors}
    out = {}
    decoded = nnr.decode(data)
    for name in names:
        step = step_size(qps[name], 2)
        k = np.rint(decoded[name].astype(np.float64) / float(step))
        assert np.array_equal(k.astype(np.float32) * step, decoded[name]), name
        out[name] = (k.astype(np.int64), float(step))
    return out


# ------------------------------------------------------------------------------- levels

@pytest.mark.parametrize("mode", MODES)
def test_weight_levels_are_binary_or_ternary(mode):
    t = model()
    data = nnr.encode(t, stochastic=mode)
    info = {x.name: x for x in nnr.inspect(data).tensors}
    for name, (k, step) in weight_levels(data, ["conv.weight", "fc.weight"]).items():
        assert set(np.unique(k).tolist()) == ALLOWED[mode], (name, np.unique(k))
        assert not info[name].dq and not info[name].codebook
        # d is the representable step nearest to the tensor's scale
        d = stochastic_scale(t[name], mode)
        assert info[name].qp == nearest_qp(d, 2)
        assert abs(step_size_double(info[name].qp, 2) - d) <= \
            abs(step_size_double(info[name].qp + 1, 2) - d)
        assert abs(step_size_double(info[name].qp, 2) - d) <= \
            abs(step_size_double(info[name].qp - 1, 2) - d)
    # 1-D and integer tensors are coded exactly as without stochastic quantization
    plain = nnr.decode(nnr.encode(t))
    out = nnr.decode(data)
    for name in ("conv.bias", "fc.bias", "steps"):
        assert out[name].tobytes() == plain[name].tobytes(), name
    assert info["conv.bias"].dq and info["conv.bias"].qp == -75


def test_scales():
    rng = np.random.default_rng(3)
    w = rng.standard_normal(5000)
    a = np.abs(w)
    assert stochastic_scale(w, "binary") == pytest.approx(a.mean())
    # ternary: the TWN rule, d = mean of |w| above 0.7 mean|w|
    assert stochastic_scale(w, "ternary") == pytest.approx(a[a > 0.7 * a.mean()].mean())
    assert stochastic_scale(np.zeros(7), "ternary") == 0.0
    assert stochastic_scale(np.full(5, -0.5), "ternary") == 0.5


@pytest.mark.parametrize("mode", MODES)
def test_values_beyond_d_clip_to_plus_minus_d(mode):
    small = np.random.default_rng(4).standard_normal(124) * 0.05
    w = np.concatenate([small, [2.0, 2.0, -2.0, -2.0]]).astype(np.float32).reshape(8, 16)
    for seed in range(5):
        data = nnr.encode({"w": w}, stochastic=mode, seed=seed)
        k, step = weight_levels(data, ["w"])["w"]
        assert step < 1.0
        assert (k.ravel()[124:126] == 1).all() and (k.ravel()[126:] == -1).all()


def test_zero_weight_and_empty_weight_stay_zero():
    t = {"z": np.zeros((4, 5), np.float32), "e": np.zeros((0, 3), np.float32)}
    for mode in MODES:
        out = nnr.decode(nnr.encode(t, stochastic=mode))
        assert not out["z"].any() and out["e"].shape == (0, 3)


@pytest.mark.parametrize("mode", MODES)
def test_unbiased(mode):
    """Over many seeds the mean decoded value is w (|w| <= d), within a statistical bound:
    per element 5 standard errors of the mean, and the squared z-scores average about 1."""
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((12, 20)) * 0.05).astype(np.float32)
    seeds = 300
    total = np.zeros(w.size)
    d = None
    for seed in range(seeds):
        data = nnr.encode({"w": w}, stochastic=mode, seed=seed, threads=1)
        k, step = weight_levels(data, ["w"])["w"]
        d = step if d is None else d
        assert step == d                     # d depends on the values only
        total += k.ravel() * step
    mean = total / seeds
    x = w.astype(np.float64).ravel()
    inside = np.abs(x) <= d
    assert inside.sum() > 0.5 * x.size
    var = (d * d - x * x) if mode == "binary" else (np.abs(x) * d - x * x)
    se = np.sqrt(np.maximum(var, 0) / seeds)
    dev = np.abs(mean - x)
    assert (dev[inside] <= 5 * se[inside] + 1e-9).all()
    z2 = (dev[inside] / np.maximum(se[inside], 1e-12)) ** 2
    assert 0.6 < z2[se[inside] > 0].mean() < 1.5
    # outside [-d, d] the value is clipped to +-d (biased towards zero, deterministic)
    assert np.allclose(mean[~inside], np.sign(x[~inside]) * d)


def test_levels_direct():
    """stochastic_levels on its own: P(+1) = (w + d) / 2d, checked on many draws."""
    w = np.array([0.0, 0.25, -0.5, 0.75], np.float64)
    k, qp = stochastic_levels(np.tile(w, 20000), "binary", 2, tensor_rng(0, "x"))
    d = float(step_size(qp, 2))
    p = np.clip((w + d) / (2 * d), 0, 1)
    frac = (k.reshape(-1, 4) == 1).mean(axis=0)
    assert np.all(np.abs(frac - p) < 0.015)


# -------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("mode", MODES)
def test_deterministic(mode):
    t = model()
    a = nnr.encode(t, stochastic=mode, seed=7, threads=1)
    assert nnr.encode(t, stochastic=mode, seed=7, threads=2) == a
    assert nnr.encode(t, stochastic=mode, seed=7, threads=4) == a
    assert nnr.encode(t, stochastic=mode, seed=8) != a
    assert nnr.encode(t, stochastic=mode) == nnr.encode(t, stochastic=mode, seed=0)
    # a tensor's levels depend on the seed and its name, not on the other tensors or order
    alone = nnr.decode(nnr.encode({"fc.weight": t["fc.weight"]}, stochastic=mode, seed=7))
    reordered = nnr.decode(nnr.encode(dict(reversed(list(t.items()))), stochastic=mode, seed=7))
    assert alone["fc.weight"].tobytes() == nnr.decode(a)["fc.weight"].tobytes()
    assert reordered["conv.weight"].tobytes() == nnr.decode(a)["conv.weight"].tobytes()


def test_blocks_and_options():
    t = model()
    blocks = {"conv.weight": {"bias": "conv.bias"}}
    data = nnr.encode(t, stochastic="ternary", blocks=blocks, seed=1)
    info = nnr.inspect(data)
    assert "block" in info.tools
    k, _ = weight_levels(data, ["conv.weight"])["conv.weight"]
    assert set(np.unique(k).tolist()) <= {-1, 0, 1}
    # the weight's levels are those of the NDU-per-tensor stream (same name, same seed)
    single = nnr.decode(nnr.encode(t, stochastic="ternary", seed=1))
    assert nnr.decode(data)["conv.weight"].tobytes() == single["conv.weight"].tobytes()
    for opts in ({"scan_order": 2}, {"row_skip": True}, {"profile": 0}, {"dq": False},
                 {"raw_float": ["fc.weight"]}, {"lambda_scale": 1.0}):
        d2 = nnr.encode(t, stochastic="binary", **opts)
        out = nnr.decode(d2)
        if "raw_float" in opts:
            assert out["fc.weight"].tobytes() == t["fc.weight"].tobytes()
        else:
            k, _ = weight_levels(d2, ["fc.weight"])["fc.weight"]
            assert set(np.unique(k).tolist()) == {-1, 1}, opts


@pytest.mark.parametrize("options, match", [
    ({"stochastic": "quaternary"}, "binary"), ({"stochastic": True}, "binary"),
    ({"stochastic": "binary", "seed": -1}, "seed"),
    ({"stochastic": "binary", "seed": 1.5}, "seed"),
    ({"stochastic": "binary", "seed": True}, "seed"),
    ({"stochastic": "ternary", "codebook": "on"}, "codebook"),
    ({"stochastic": "ternary", "codebook": "auto"}, "codebook"),
    ({"stochastic": "binary", "bit_depth": 4}, "give one"),
    ({"stochastic": "binary", "qp_per_tensor": {"w": -30}}, "qp_per_tensor"),
    ({"stochastic": "binary", "low_rank": 0.1}, "low_rank"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        nnr.encode({"w": np.ones((2, 3), np.float32)}, **options)


# ---------------------------------------------------------------------------- the CLI

def test_cli_stochastic(nnr_cli, tmp_path):
    t = model()
    src = tmp_path / "t.npz"
    np.savez(src, **t)
    out = tmp_path / "t.nnr"
    r = nnr_cli("encode", src, "-o", out, "--stochastic", "ternary", "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == nnr.encode(t, stochastic="ternary", seed=5)
    r = nnr_cli("encode", src, "-o", out, "--stochastic", "binary")
    assert r.returncode == 0 and out.read_bytes() == nnr.encode(t, stochastic="binary")
    for args, status, text in [
            (["--seed", "3"], 1, "--seed needs --stochastic"),
            (["--stochastic", "binary", "--codebook", "on"], 1, "codebook must be 'off'"),
            (["--stochastic", "binary", "--seed", "-2"], 1, "seed"),
            (["--stochastic", "ternary", "--size", "1000"], 1, "--max-drop or --size"),
            (["--stochastic", "ternary", "--low-rank", "0.1"], 1, "low_rank"),
            (["--stochastic", "ternary", "--lossless"], 1, "--lossless"),
            (["--stochastic", "quaternary"], 2, "--stochastic")]:
        r = nnr_cli("encode", src, "-o", tmp_path / "x.nnr", *args)
        assert r.returncode == status, (args, r.stderr)
        assert text in r.error_line(), (args, r.stderr)
    assert not (tmp_path / "x.nnr").exists()


# ---------------------------------------------------------------- NNCodec 2.1.3 decodes

def test_nncodec_decodes_stochastic_streams(nncodec, tmp_path):
    t = model()
    blocks = {"conv.weight": {"bias": "conv.bias"}}
    cases = {f"{mode}_{i}": dict(stochastic=mode, **opts)
             for mode in MODES
             for i, opts in enumerate([{}, {"scan_order": 1, "seed": 3}, {"blocks": blocks},
                                       {"row_skip": True, "dq": False, "seed": 9}])}
    jobs, data = [], {}
    for cid, opts in cases.items():
        data[cid] = nnr.encode(t, **opts)
        (tmp_path / f"{cid}.nnr").write_bytes(data[cid])
        jobs.append({"index": cid, "streams": [str(tmp_path / f"{cid}.nnr")],
                     "out": str(tmp_path / f"{cid}.npz"), "sequence": False})
    results = nncodec.decode(jobs, tmp_path)
    for cid in cases:
        assert results[cid]["status"] == "ok", (cid, results[cid])
        ours = nnr.decode(data[cid])
        with np.load(tmp_path / f"{cid}.npz") as theirs:
            assert sorted(theirs.files) == sorted(ours), cid
            for name in theirs.files:
                assert theirs[name].dtype == np.asarray(ours[name]).dtype, (cid, name)
                assert theirs[name].tobytes() == np.asarray(ours[name]).tobytes(), (cid, name)
