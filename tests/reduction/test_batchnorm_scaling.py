"""Batch-norm folding into local scaling + bias, its decoder-side unfolding, and local
scaling adaptation (data-free and trained)."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr.bitstream.enums import CompressedParameterTypes as CPT
from nnr.bitstream.enums import NnrUnitType, PayloadType
from nnr.bitstream.stream import parse_stream
from nnr.errors import ConfigError
from nnr.reduction import (BatchNorm, add_local_scaling, apply_local_scaling, decode_model,
                           find_batch_norms, fit_local_scaling, fold_batch_norm, quantized,
                           tune_local_scaling, unfold_batch_norm)
from tests.reduction.conftest import (EPS, forward, full_loss, inputs, needs_torch,
                                      task_loss)

BNS = {"conv1.weight": BatchNorm("bn1.weight", "bn1.bias", "bn1.running_mean",
                                 "bn1.running_var", EPS),
       "conv2.weight": BatchNorm("bn2.weight", "bn2.bias", "bn2.running_mean",
                                 "bn2.running_var", EPS)}


def test_find_batch_norms_from_state_dict_names(model):
    assert find_batch_norms(model, EPS) == BNS


def test_folding_is_exact_and_names_follow_nncodec(model):
    folded, blocks = fold_batch_norm(model, BNS)
    assert list(folded)[:3] == ["conv1.weight", "conv1.weight_scaling", "conv1.weight.bias"]
    assert not any(n.startswith("bn") for n in folded)
    assert blocks["conv2.weight"] == {"weight.ls": "conv2.weight_scaling",
                                      "bias": "conv2.weight.bias"}
    for scale_weight in (False, True):
        back = unfold_batch_norm(folded, BNS, scale_weight=scale_weight)
        assert set(back) == set(model)
        x = inputs()
        np.testing.assert_allclose(forward(back, x), forward(model, x), rtol=1e-5, atol=1e-5)


def test_layer_bias_is_folded_into_delta(model):
    model = dict(model)
    model["conv1.bias"] = np.linspace(-1, 1, 8).astype(np.float32)
    bn = dict(BNS)
    bn["conv1.weight"] = BatchNorm(*BNS["conv1.weight"].names, eps=EPS, bias="conv1.bias")
    folded, blocks = fold_batch_norm(model, bn)
    assert blocks["conv1.weight"]["bias"] == "conv1.bias"
    alpha = model["bn1.weight"] / np.sqrt(model["bn1.running_var"] + EPS)
    want = (model["conv1.bias"] - model["bn1.running_mean"]) * alpha + model["bn1.bias"]
    np.testing.assert_allclose(folded["conv1.bias"], want, rtol=1e-6)
    back = unfold_batch_norm(folded, bn)
    assert np.all(back["conv1.bias"] == 0)


def test_folded_stream_codes_ls_and_bias_in_a_block(model):
    folded, blocks = fold_batch_norm(model, BNS)
    data = nnr.encode(folded, blocks=blocks, qp=-60)
    blocks_seen = [u.header for u in parse_stream(data) if u.unit_type == NnrUnitType.NDU
                   and u.header.payload_type == PayloadType.BLOCK]
    assert [h.compressed_parameter_types for h in blocks_seen] == [CPT.LS | CPT.BI] * 2
    assert len(data) < len(nnr.encode(model, qp=-60))
    back = decode_model(data, batch_norms=BNS)
    assert set(back) == set(model)
    assert full_loss(model, back) < 1e-4


def test_fold_errors(model):
    with pytest.raises(ConfigError, match="missing"):
        fold_batch_norm(model, {"conv1.weight": BatchNorm("x", "bn1.bias", "bn1.running_mean",
                                                          "bn1.running_var")})
    with pytest.raises(ConfigError, match="shape"):
        fold_batch_norm(model, {"conv2.weight": BNS["conv1.weight"]})


def test_fit_local_scaling_recovers_row_scales():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 10)).astype(np.float32)
    s = np.array([1, 2, 0.5, 3, 1, 1], np.float32)
    w = q * s[:, None]
    q[5] = 0
    np.testing.assert_allclose(fit_local_scaling(w, q), [1, 2, .5, 3, 1, 1], rtol=1e-6)


def test_data_free_local_scaling_lowers_the_error(model):
    qp = -24
    ls_tensors, blocks = add_local_scaling(model, qp=qp, names=["fc1.weight", "conv2.weight"])
    assert blocks == {"fc1.weight": {"weight.ls": "fc1.weight_scaling"},
                      "conv2.weight": {"weight.ls": "conv2.weight_scaling"}}
    q = quantized(model, ["fc1.weight"], qp=qp)["fc1.weight"]
    dec = decode_model(nnr.encode(ls_tensors, blocks=blocks, qp=qp))
    err_plain = np.linalg.norm(q - model["fc1.weight"])
    err_ls = np.linalg.norm(dec["fc1.weight"] - model["fc1.weight"])
    assert err_ls < err_plain


def test_local_scaling_merges_with_folded_alpha(model):
    folded, blocks = fold_batch_norm(model, BNS)
    merged, blocks = add_local_scaling(folded, qp=-30, blocks=blocks)
    assert [n for n in merged if n.endswith("_scaling")] == [
        "conv1.weight_scaling", "conv2.weight_scaling", "fc1.weight_scaling",
        "fc2.weight_scaling"]
    ratio = merged["conv1.weight_scaling"] / folded["conv1.weight_scaling"]
    assert np.all(np.abs(ratio - 1) < 0.2) and not np.all(ratio == 1)
    back = decode_model(nnr.encode(merged, blocks=blocks, qp=-30), batch_norms=BNS)
    assert set(back) == set(model)


def test_apply_local_scaling_checks_shapes():
    with pytest.raises(ConfigError, match="rows"):
        apply_local_scaling({"w": np.ones((3, 2), np.float32),
                             "w_scaling": np.ones(2, np.float32)})


@needs_torch
def test_trained_local_scaling_beats_plain_quantization(model):
    qp = -20
    folded, blocks = fold_batch_norm(model, BNS)
    loss_fn = task_loss(model)
    from nnr.reduction import FineTune
    tuned, blocks2, history = tune_local_scaling(
        folded, loss_fn, qp=qp, blocks=blocks, batch_norms=BNS,
        finetune=FineTune(steps=40, lr=5e-3))
    assert len(history) == 40
    plain = decode_model(nnr.encode(folded, blocks=blocks, qp=qp), batch_norms=BNS)
    lsa = decode_model(nnr.encode(tuned, blocks=blocks2, qp=qp), batch_norms=BNS)
    assert full_loss(model, lsa) < full_loss(model, plain)
