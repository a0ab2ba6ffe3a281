"""Low-rank decomposition: rank choice, the skip rule, the DC signalling in both NDU layouts,
recomposition by the decoder, and the framework view (k x k conv then 1 x 1 conv)."""
from __future__ import annotations

import numpy as np
import pytest

import nnr
from nnr.bitstream.enums import CompressedParameterTypes as CPT
from nnr.bitstream.enums import NnrUnitType, PayloadType
from nnr.bitstream.stream import parse_stream
from nnr.decoder import decode_recomposed
from nnr.errors import ConfigError
from nnr.reduction import (BatchNorm, conv_pair, decode_model, decompose, fold_batch_norm,
                           low_rank, recompose)
from nnr.reduction.lowrank import max_useful_rank, rank_for_tolerance
from tests.reduction.conftest import needs_torch


def low_rank_weight(shape=(64, 16, 3, 3), rank=6, noise=0.01, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m, n = shape[0], int(np.prod(shape[1:]))
    w = rng.normal(size=(m, rank)) @ rng.normal(size=(rank, n)) / np.sqrt(rank)
    return (w + noise * rng.normal(size=(m, n))).reshape(shape).astype(np.float32)


def test_rank_is_the_smallest_within_tolerance():
    s = np.array([4.0, 2.0, 1.0, 0.5])
    total = np.sqrt((s ** 2).sum())
    for tol in (0.0, 0.05, 0.2, 0.3, 0.99):
        r = rank_for_tolerance(s, tol)
        assert np.sqrt((s[r:] ** 2).sum()) <= tol * total + 1e-12
        assert r == 0 or np.sqrt((s[r - 1:] ** 2).sum()) > tol * total


def test_decomposition_meets_tolerance_and_balances_factors():
    w = low_rank_weight()
    lr = low_rank(w, 0.05)
    assert lr is not None and lr.rank == 6
    err = np.linalg.norm(lr.recompose() - w) / np.linalg.norm(w)
    assert err <= 0.05 and abs(err - lr.error) < 1e-5
    # G = U sqrt(S), H = sqrt(S) V^T: column norms of G equal row norms of H
    np.testing.assert_allclose(np.linalg.norm(lr.g, axis=0), np.linalg.norm(lr.h, axis=1),
                               rtol=1e-4)


def test_skipped_when_it_would_not_save_parameters():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(20, 30)).astype(np.float32)       # full rank
    assert max_useful_rank(20, 30) == 11                     # 11 * 50 < 600 <= 12 * 50
    assert low_rank(w, 0.01) is None
    lr = low_rank(w, 0.9)
    assert lr is not None and lr.rank <= 11
    with pytest.raises(ConfigError):
        low_rank(w, 1.0)


def test_decompose_replaces_weights_in_place():
    t = {"a.weight": low_rank_weight((32, 8, 3, 3), 3), "a.bias": np.ones(32, np.float32),
         "b.weight": np.eye(8, dtype=np.float32)}
    out, done = decompose(t, 0.05)
    assert list(out) == ["a.weight_G", "a.weight_H", "a.bias", "b.weight"]
    assert set(done) == {"a.weight"}
    np.testing.assert_allclose(recompose(out["a.weight_G"], out["a.weight_H"], (32, 8, 3, 3)),
                               done["a.weight"].recompose())


def _ndus(data: bytes):
    return [u for u in parse_stream(data) if u.unit_type == NnrUnitType.NDU]


def test_separate_ndus_signal_dc():
    w = low_rank_weight()
    data = nnr.encode({"conv.weight": w, "fc.weight": np.ones((4, 5), np.float32)},
                      low_rank={"conv.weight": 0.05})
    ndus = _ndus(data)
    g, h = ndus[0].header, ndus[1].header
    for hdr, name in ((g, "conv.weight_G"), (h, "conv.weight_H")):
        assert hdr.topology_elem_id == name
        assert hdr.payload_type == PayloadType.FLOAT
        assert hdr.compressed_parameter_types == CPT.DC
        assert (hdr.decomposition_rank, hdr.g_number_of_rows) == (6, 64)
        assert hdr.tensor_dimensions == [64, 16, 3, 3]
    assert ndus[2].header.compressed_parameter_types == 0
    dec = nnr.decode(data)
    assert dec["conv.weight_G"].shape == (64, 6) and dec["conv.weight_H"].shape == (6, 144)
    rec = decode_recomposed(data)
    assert list(rec) == ["conv.weight", "fc.weight"]
    assert np.linalg.norm(rec["conv.weight"] - w) / np.linalg.norm(w) < 0.05
    np.testing.assert_array_equal(
        rec["conv.weight"], recompose(dec["conv.weight_G"], dec["conv.weight_H"], w.shape))


@pytest.mark.parametrize("scan", [0, 1, 3])
def test_block_carries_g_and_h_with_ls_bias(scan):
    rng = np.random.default_rng(2)
    t = {"conv.weight": low_rank_weight(), "conv.weight_scaling": rng.uniform(0.5, 2, 64),
         "conv.bias": rng.normal(size=64)}
    t = {k: np.asarray(v, np.float32) for k, v in t.items()}
    blocks = {"conv.weight": {"weight.ls": "conv.weight_scaling", "bias": "conv.bias"}}
    data = nnr.encode(t, blocks=blocks, low_rank=0.05, scan_order=scan)
    (ndu,) = _ndus(data)
    hdr = ndu.header
    assert hdr.payload_type == PayloadType.BLOCK
    assert hdr.compressed_parameter_types == CPT.DC | CPT.LS | CPT.BI
    assert hdr.topology_elem_id_list == ["conv.weight_G", "conv.weight_H",
                                         "conv.weight_scaling", "conv.bias"]
    assert hdr.scan_order == scan and (hdr.decomposition_rank, hdr.g_number_of_rows) == (6, 64)
    model = decode_model(data)      # recomposed, then W *= ls
    assert list(model) == ["conv.bias", "conv.weight"]
    want = t["conv.weight"] * t["conv.weight_scaling"][:, None, None, None]
    assert np.linalg.norm(model["conv.weight"] - want) / np.linalg.norm(want) < 0.05


def test_block_with_folded_batch_norm_round_trip():
    rng = np.random.default_rng(3)
    t = {"c.weight": low_rank_weight((32, 4, 3, 3), 4), "bn.weight": rng.uniform(.5, 2, 32),
         "bn.bias": rng.normal(size=32), "bn.running_mean": rng.normal(size=32),
         "bn.running_var": rng.uniform(.5, 2, 32)}
    t = {k: np.asarray(v, np.float32) for k, v in t.items()}
    bns = {"c.weight": BatchNorm("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")}
    folded, blocks = fold_batch_norm(t, bns)
    data = nnr.encode(folded, blocks=blocks, low_rank=0.05, qp=-50)
    model = decode_model(data, batch_norms=bns)
    assert set(model) == set(t)
    assert model["bn.running_var"][0] == np.float32(1 - 1e-5)
    assert np.abs(model["bn.weight"] - 1).max() == 0


def test_non_block_scan_order_dropped_when_entry_point_counts_differ():
    # G: 64 rows, H: 6 rows -> 8 vs 1 block rows at scan_order 1: NNCodec would misparse
    data = nnr.encode({"w": low_rank_weight()}, low_rank=0.05, scan_order=1)
    assert [u.header.scan_order for u in _ndus(data)] == [0, 0]
    # 8 x 64 rank 3 -> G 8 x 3 and H 3 x 64: one block row each, the scan order stays
    w = low_rank_weight((8, 64), 3, noise=0)
    data = nnr.encode({"w": w}, low_rank=0.01, scan_order=1)
    assert [u.header.scan_order for u in _ndus(data)] == [1, 1]


def test_codebook_and_qp_per_tensor_apply_to_factors():
    w = low_rank_weight()
    data = nnr.encode({"w": w}, low_rank=0.05, codebook="on", qp_per_tensor={"w_H": -44})
    info = nnr.inspect(data)
    qps = {t.name: t.qp for t in info.tensors}
    assert all(t.codebook for t in info.tensors)
    assert qps["w_H"] == -44 - 4           # codebook halves the step (qp - 2^qp_density)
    data = nnr.encode({"w": w}, low_rank=0.05, qp_per_tensor={"w": -30})
    assert {t.qp for t in nnr.inspect(data).tensors} == {-30}


def test_low_rank_errors():
    w = low_rank_weight((16, 16), 2)
    with pytest.raises(ConfigError, match="low_rank tolerances"):
        nnr.encode({"w": w}, low_rank=1.5)
    with pytest.raises(ConfigError, match="no tensor"):
        nnr.encode({"w": w}, low_rank={"x": 0.1})
    with pytest.raises(ConfigError, match="exists"):
        nnr.encode({"w": w, "w_G": w}, low_rank=0.1)
    with pytest.raises(ConfigError, match="two or more"):
        nnr.encode({"w": np.ones(5, np.float32)}, low_rank={"w": 0.1})
    with pytest.raises(ConfigError, match="differential"):
        nnr.encode({"w": w}, low_rank=0.1, differences=True)
    with pytest.raises(ConfigError, match="raw_float"):
        nnr.encode({"w": w}, low_rank=0.1, raw_float=True)


def test_one_dimensional_and_integer_tensors_are_left_alone():
    t = {"b": np.ones(8, np.float32), "i": np.arange(12, dtype=np.int32).reshape(3, 4),
         "w": low_rank_weight((16, 16), 2)}
    dec = nnr.decode(nnr.encode(t, low_rank=0.1))
    assert list(dec) == ["b", "i", "w_G", "w_H"]


def test_conv_pair_equals_the_decomposed_conv():
    w = low_rank_weight((12, 5, 3, 3), 3, noise=0)
    lr = low_rank(w, 1e-4)
    first, second = conv_pair(lr.g, lr.h, w.shape)
    assert first.shape == (3, 5, 3, 3) and second.shape == (12, 3, 1, 1)
    x = np.random.default_rng(4).normal(size=(5, 7, 7))
    patches = np.stack([x[:, i:i + 3, j:j + 3].ravel() for i in range(5) for j in range(5)], 1)
    direct = w.reshape(12, -1) @ patches                                    # conv as a matmul
    two = second.reshape(12, 3) @ (first.reshape(3, -1) @ patches)
    np.testing.assert_allclose(two, direct, rtol=1e-4, atol=1e-4)


@needs_torch
def test_conv_pair_in_torch():
    import torch
    import torch.nn.functional as F
    w = low_rank_weight((12, 5, 3, 3), 3, noise=0)
    lr = low_rank(w, 1e-4)
    first, second = conv_pair(lr.g, lr.h, w.shape)
    x = torch.randn(2, 5, 9, 9)
    y = F.conv2d(x, torch.from_numpy(w), padding=1)
    y2 = F.conv2d(F.conv2d(x, torch.from_numpy(first), padding=1), torch.from_numpy(second))
    assert torch.allclose(y, y2, atol=1e-4)
