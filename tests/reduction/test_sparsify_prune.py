"""Sparsification (magnitude, compressibility loss) and structured pruning by diffusion."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr.errors import ConfigError
from nnr.reduction import (ChannelGroup, FineTune, PrunePlan, Slice, SparsifyPlan,
                           channel_importance, magnitude_sparsify, prune, prune_channels,
                           sparsify, sparsity)
from nnr.reduction.prune import stationary_distribution
from tests.reduction.conftest import forward, full_loss, inputs, needs_torch, task_loss

GROUPS = [
    ChannelGroup("conv1.weight", (Slice("bn1.weight"), Slice("bn1.bias"),
                                  Slice("bn1.running_mean"), Slice("bn1.running_var"),
                                  Slice("conv2.weight", 1))),
    ChannelGroup("conv2.weight", (Slice("bn2.weight"), Slice("bn2.bias"),
                                  Slice("bn2.running_mean"), Slice("bn2.running_var"),
                                  Slice("fc1.weight", 1, repeat=4))),
    ChannelGroup("fc1.weight", (Slice("fc1.bias"), Slice("fc2.weight", 1))),
]


def test_magnitude_sparsify_per_tensor_and_global(model):
    out = magnitude_sparsify(model, 0.5)
    for n in ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"):
        assert np.count_nonzero(out[n] == 0) == round(0.5 * model[n].size)
        kept = np.abs(out[n][out[n] != 0])
        assert kept.min() >= np.abs(model[n][out[n] == 0]).max()
    np.testing.assert_array_equal(out["fc1.bias"], model["fc1.bias"])     # 1-D untouched
    g = magnitude_sparsify(model, 0.5, scope="global")
    assert abs(sparsity(g) - 0.5) < 0.01
    t = magnitude_sparsify(model, threshold=1.0)
    w = model["fc1.weight"]
    rms = np.sqrt(np.mean(w.astype(np.float64) ** 2))
    assert np.array_equal(t["fc1.weight"] == 0, np.abs(w) < rms)
    with pytest.raises(ConfigError):
        magnitude_sparsify(model, 0.5, threshold=1.0)
    with pytest.raises(ConfigError):
        magnitude_sparsify(model, 1.5)


def test_plan_validation():
    with pytest.raises(ConfigError):
        SparsifyPlan(1.2)
    with pytest.raises(ConfigError):
        SparsifyPlan(0.5, multiple=-1)


def test_sparsity_makes_the_stream_smaller():
    w = np.random.default_rng(0).normal(size=(128, 256)).astype(np.float32)
    sizes = [len(nnr.encode(magnitude_sparsify({"w": w}, r), qp=-40)) for r in (0, .5, .9)]
    assert sizes[0] > sizes[1] > sizes[2]


@needs_torch
def test_compressibility_loss_value():
    import torch
    from nnr.reduction import compressibility_loss
    t = {"a": torch.tensor([3.0, 4.0]), "b": torch.tensor([[1.0, 0.0]])}
    assert float(compressibility_loss(t, ["a", "b"])) == pytest.approx(7 / 5 + 1)


@needs_torch
def test_sparsify_with_compressibility_loss_reaches_the_ratio(model):
    loss_fn = task_loss(model)
    out, report = sparsify(model, loss_fn, SparsifyPlan(0.6, multiple=0.5,
                                                        finetune=FineTune(steps=20, lr=3e-3),
                                                        recover=FineTune(steps=10, lr=1e-3)))
    assert len(report.loss) == 20 and len(report.recover_loss) == 10
    assert report.sparsity == pytest.approx(0.6, abs=0.02)
    np.testing.assert_array_equal(out["bn1.running_var"], model["bn1.running_var"])
    plain = magnitude_sparsify(model, 0.6)
    assert full_loss(model, out) < full_loss(model, plain)


def test_stationary_distribution_of_a_symmetric_chain_is_the_degree():
    a = np.array([[2.0, 1, 0], [1, 1, 1], [0, 1, 3]])
    np.testing.assert_allclose(stationary_distribution(a), a.sum(1) / a.sum(), rtol=1e-9)
    assert stationary_distribution(np.zeros((2, 2))).tolist() == [0, 0]


def test_importance_is_zero_for_a_dead_channel():
    rows = np.random.default_rng(0).normal(size=(5, 7))
    rows[2] = 0
    s = channel_importance(rows)
    assert s[2] == 0 and np.all(s[[0, 1, 3, 4]] > 0)
    assert s.max() < 1


def test_pruned_model_equals_the_model_without_those_channels(model):
    out, kept = prune_channels(model, GROUPS, 0.5)
    assert out["conv1.weight"].shape == (4, 3, 1, 1)
    assert out["conv2.weight"].shape == (3, 4, 1, 1) and out["bn2.bias"].shape == (3,)
    assert out["fc1.weight"].shape == (3, 12) and out["fc2.weight"].shape == (3, 3)
    # the original model with the removed channels' consumers cut computes the same
    cut = {k: v.copy() for k, v in model.items()}
    drop1 = np.setdiff1d(np.arange(8), kept["conv1.weight"])
    cut["conv2.weight"][:, drop1] = 0
    drop2 = np.setdiff1d(np.arange(6), kept["conv2.weight"])
    fc1 = cut["fc1.weight"].reshape(5, 6, 4)
    fc1[:, drop2] = 0
    cut["fc1.weight"] = fc1.reshape(5, 24)
    drop3 = np.setdiff1d(np.arange(5), kept["fc1.weight"])
    cut["fc2.weight"][:, drop3] = 0
    x = inputs()
    np.testing.assert_allclose(forward(out, x), forward(cut, x), rtol=1e-5, atol=1e-6)
    assert len(nnr.encode(out)) < len(nnr.encode(model))


def test_global_scope_and_criteria(model):
    out, kept = prune_channels(model, GROUPS, 0.5, scope="global")
    assert sum(len(k) for k in kept.values()) == 19 - round(0.5 * 19)
    _, l1 = prune_channels(model, GROUPS, {"fc1.weight": 0.4}, criterion="l1")
    assert len(l1["fc1.weight"]) == 3 and len(l1["conv1.weight"]) == 8
    with pytest.raises(ConfigError, match="channels"):
        prune_channels(model, [ChannelGroup("conv2.weight", (Slice("fc1.weight", 1),))], 0.5)
    with pytest.raises(ConfigError, match="two channel groups"):
        prune_channels(model, GROUPS + [ChannelGroup("fc1.weight")], 0.5)


@needs_torch
def test_algorithm_1_prune_recover_sparsify(model):
    loss_fn = task_loss(model)
    plan = PrunePlan(0.25, recover=FineTune(steps=15, lr=3e-3), sparsity=0.3)
    out, report = prune(model, GROUPS, plan, loss_fn)
    assert report.parameters_after < report.parameters_before
    assert 0 < report.pruning_ratio < 1 and report.sparsity == pytest.approx(0.3, abs=0.02)
    assert len(report.recover_loss) == 15
    assert out["conv1.weight"].shape[0] == 6
