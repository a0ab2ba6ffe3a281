"""Fine-tuning of low-rank factors (fine_tune_low_rank) and coding given factors
(``low_rank={w: LowRank}``): on the tiny distillation model, and on the trained Fashion-MNIST
CNN with real training images."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

import nnr
from nnr.bitstream.enums import CompressedParameterTypes as CPT
from nnr.bitstream.enums import NnrUnitType
from nnr.bitstream.stream import parse_stream
from nnr.decoder import decode_recomposed
from nnr.errors import ConfigError
from nnr.reduction import (FineTune, LowRank, apply_low_rank, decompose, fine_tune_low_rank,
                           low_rank)
from tests.reduction.conftest import full_loss, make_model, needs_torch, task_loss

REPO = Path(__file__).resolve().parents[2]
FASHION = REPO / "benchmarks" / "eval" / "fashion_cnn.npz"
DATA_DIR = Path(os.environ.get("NNR_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
MEAN, STD, BN_EPS = 0.2860, 0.3530, 1e-5


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------ tiny model

@needs_torch
def test_fine_tuning_lowers_the_task_loss():
    ref = make_model()
    _, factors = decompose(ref, 0.6)
    assert set(factors) >= {"fc1.weight", "conv2.weight"}
    plain = full_loss(ref, apply_low_rank(ref, factors))
    tuned, history = fine_tune_low_rank(ref, factors, task_loss(ref), FineTune(120, 3e-3))
    assert len(history) == 120 and np.mean(history[-10:]) < np.mean(history[:10])
    assert full_loss(ref, apply_low_rank(ref, tuned)) < 0.5 * plain
    for w, lr in tuned.items():
        assert lr.rank == factors[w].rank and lr.shape == factors[w].shape
        assert lr.g.dtype == np.float32 and lr.h.dtype == np.float32
        assert lr.error == pytest.approx(_relative_error(lr.recompose(), ref[w]), rel=1e-4)
        assert not np.array_equal(lr.g, factors[w].g)
    # the other tensors are not changed, and the input factors are not modified
    assert np.array_equal(factors["fc1.weight"].recompose(), low_rank(ref["fc1.weight"], 0.6)
                          .recompose())


@needs_torch
def test_pre_decomposed_tensors_are_accepted():
    """``tensors`` may hold <w>_G / <w>_H (decompose's first result) instead of W."""
    ref = make_model()
    coded, factors = decompose(ref, 0.6)
    a, _ = fine_tune_low_rank(ref, factors, task_loss(ref), FineTune(20, 1e-3))
    b, _ = fine_tune_low_rank(coded, factors, task_loss(ref), FineTune(20, 1e-3))
    for w in factors:
        np.testing.assert_array_equal(a[w].g, b[w].g)
        np.testing.assert_array_equal(a[w].h, b[w].h)
        # without W, the error is against the initial G H
        assert b[w].error == pytest.approx(
            _relative_error(b[w].recompose(), factors[w].recompose()), rel=1e-4)
    assert list(apply_low_rank(coded, factors)) == list(ref)       # W back at G's place


def test_given_factors_are_coded_with_dc():
    ref = make_model()
    _, factors = decompose(ref, 0.6)
    rng = np.random.default_rng(4)
    given = {w: LowRank(lr.g + 0.01 * rng.normal(size=lr.g.shape).astype(np.float32), lr.h,
                        lr.shape, lr.error) for w, lr in factors.items()}
    data = nnr.encode(ref, qp=-44, low_rank=given)
    units = [u for u in parse_stream(data) if u.unit_type == NnrUnitType.NDU]
    dc = [u for u in units if u.header.compressed_parameter_types & CPT.DC]
    assert len(dc) == 2 * len(given)
    for u in dc:
        w = str(u.header.topology_elem_ids[0])[:-2]
        assert u.header.decomposition_rank == given[w].rank
        assert list(u.header.tensor_dimensions) == list(ref[w].shape)
    dec = nnr.decode(data)
    rec = decode_recomposed(data)
    for w, lr in given.items():
        step = 2.0 ** (-44 / 4)
        assert np.abs(dec[w + "_G"] - lr.g).max() <= 2 * step      # DQ: within two steps
        assert _relative_error(rec[w], lr.recompose()) < 0.02
        # the given factors, not an SVD of W
        assert not np.allclose(dec[w + "_G"], factors[w].g, atol=2 * step)
    assert list(rec) == list(ref)
    # mixed: factors for one weight, a tolerance for another (in a block)
    mixed = nnr.encode(ref, qp=-44, low_rank={"fc1.weight": given["fc1.weight"],
                                               "conv2.weight": 0.6},
                       blocks={"fc1.weight": {"bias": "fc1.bias"}})
    rec = decode_recomposed(mixed)
    assert _relative_error(rec["fc1.weight"], given["fc1.weight"].recompose()) < 0.02
    assert "conv2.weight" in rec and "fc1.bias" in rec


def test_given_factor_errors():
    ref = make_model()
    lr = low_rank(ref["fc1.weight"], 0.6)
    with pytest.raises(ConfigError, match="shape"):
        nnr.encode(ref, low_rank={"fc2.weight": lr})
    with pytest.raises(ConfigError, match="do not multiply"):
        nnr.encode(ref, low_rank={"fc1.weight": LowRank(lr.g, lr.h.T, lr.shape, 0.0)})
    with pytest.raises(ConfigError, match="finite"):
        nnr.encode(ref, low_rank={"fc1.weight": LowRank(lr.g * np.nan, lr.h, lr.shape, 0.0)})
    with pytest.raises(ConfigError, match="numbers in"):
        nnr.encode(ref, low_rank=lr)                       # factors need the weight's name
    with pytest.raises(ConfigError, match="no tensor named"):
        nnr.encode(ref, low_rank={"nope": lr})


@needs_torch
def test_fine_tune_errors():
    ref = make_model()
    lr = low_rank(ref["fc1.weight"], 0.6)
    loss = task_loss(ref)
    with pytest.raises(ConfigError, match="no factors"):
        fine_tune_low_rank(ref, {}, loss)
    with pytest.raises(ConfigError, match="no weight 'fc9.weight'"):
        fine_tune_low_rank(ref, {"fc9.weight": lr}, loss)
    with pytest.raises(ConfigError, match="shape"):
        fine_tune_low_rank({**ref, "fc2.weight": ref["fc2.weight"]}, {"fc2.weight": lr}, loss)


# ------------------------------------------------------------------------------ real data

def _images(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = DATA_DIR / f"{split}-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"Fashion-MNIST not found in {DATA_DIR} (apt-get install "
                    "dataset-fashion-mnist)")
    with gzip.open(path) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(DATA_DIR / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return ((x.astype(np.float32) / 255 - MEAN) / STD)[:, None], y.astype(np.int64)


def _logits(torch, w, x):
    import torch.nn.functional as F

    def bn(h, p):
        return F.batch_norm(h, w[p + ".running_mean"], w[p + ".running_var"], w[p + ".weight"],
                            w[p + ".bias"], False, 0.0, BN_EPS)
    h = F.max_pool2d(F.relu(bn(F.conv2d(x, w["conv1.weight"], padding=1), "bn1")), 2)
    h = F.max_pool2d(F.relu(bn(F.conv2d(h, w["conv2.weight"], padding=1), "bn2")), 2)
    h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
    return F.linear(h, w["fc2.weight"], w["fc2.bias"])


@needs_torch
def test_fine_tuning_recovers_fashion_mnist():
    """The trained CNN decomposed at tolerance 0.5 (every weight; top-1 falls from ~90 %
    to ~66 %): 150 steps on training mini-batches lower the test cross-entropy below plain
    SVD's and recover top-1, measured on 2,000 held-out test images."""
    import torch
    xtr, ytr = _images("train")
    xte, yte = _images("t10k")
    with np.load(FASHION) as z:
        model = {k: np.asarray(z[k], np.float32) for k in z.files}
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    order = np.random.RandomState(0).permutation(len(x))
    state = {"i": 0}

    def loss_fn(w):
        i = state["i"]
        state["i"] = (i + 64) % (len(order) - 64)
        idx = torch.from_numpy(order[i:i + 64])
        return torch.nn.functional.cross_entropy(_logits(torch, w, x[idx]), y[idx])

    xt, yt = torch.from_numpy(xte[:2000]), torch.from_numpy(yte[:2000])

    def test_metrics(t) -> tuple[float, float]:
        with torch.no_grad():
            out = _logits(torch, {k: torch.from_numpy(v) for k, v in t.items()}, xt)
            return (float(torch.nn.functional.cross_entropy(out, yt)),
                    float((out.argmax(1) == yt).float().mean()))

    _, factors = decompose(model, 0.5)
    assert {k: v.rank for k, v in factors.items()}["fc1.weight"] == 43
    loss0, top0 = test_metrics(model)
    loss_svd, top_svd = test_metrics(apply_low_rank(model, factors))
    tuned, history = fine_tune_low_rank(model, factors, loss_fn, FineTune(150, 3e-4))
    loss_ft, top_ft = test_metrics(apply_low_rank(model, tuned))
    assert top0 > 0.85 and top_svd < top0 - 0.1                   # the decomposition hurts
    assert loss_ft < loss_svd - 0.2                               # fine-tuning recovers
    assert top_ft > top_svd + 0.1
    assert np.mean(history[-20:]) < np.mean(history[:20])
    # coded as they are: the stream's recomposed model keeps the recovered accuracy
    rec = decode_recomposed(nnr.encode(model, qp=-26, low_rank=tuned))
    assert test_metrics(rec)[1] > top_svd + 0.1
