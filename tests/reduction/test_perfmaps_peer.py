"""Performance maps measured and written into the MPS; NNCodec 2.1.3 reading our DC streams
and maps."""
from __future__ import annotations

import json

import numpy as np
import pytest

import nnr
from nnr.bitstream.stream import parse_stream
from nnr.errors import ConfigError
from nnr.reduction import MapLevels, PerformanceMaps, measure_performance_maps
from tests.reduction.conftest import make_model, run_dc_driver, top1_agreement
from tests.reduction.test_lowrank import low_rank_weight
from tests.reduction.test_sparsify_prune import GROUPS




@pytest.fixture(scope="module")
def maps() -> PerformanceMaps:
    model = make_model()
    levels = MapLevels(sparsification=[0.5, 1.0], pruning=[0.25, 0.5], groups=GROUPS,
                       unification=[0.5], decomposition=[0.3, 0.6])
    return measure_performance_maps(model, top1_agreement(model), levels, qp=-40)


def test_measured_maps(maps):
    s = maps.sparsification
    assert s.spm_count_thresholds == 3 and s.sparsification_threshold == [0.5, 1.0]
    assert 1 > s.non_zero_ratio[0] > s.non_zero_ratio[1] > 0
    assert all(0 <= a <= 1 for a in s.spm_nn_accuracy)
    p = maps.pruning
    assert p.ppm_count_pruning_ratios == 3 and 0 < p.pruning_ratio[0] < p.pruning_ratio[1] < 1
    u = maps.unification
    assert u.block_dimensions == [[2, 2, 0]] and u.unification_threshold == [0.5]
    d = maps.decomposition
    assert d.mse_threshold == pytest.approx([0.09, 0.36])
    assert d.nn_reduction_ratio[1] <= d.nn_reduction_ratio[0] <= 1
    assert maps.metric_type == "top1" and maps.validation_set_performance == 1.0


def test_maps_are_written_into_the_mps(maps):
    model = make_model()
    data = nnr.encode(model, performance_maps=maps)
    mps = parse_stream(data)[1].payload
    assert mps.sparsification_performance_map == maps.sparsification
    assert mps.pruning_performance_map == maps.pruning
    assert mps.unification_performance_map == maps.unification
    assert mps.decomposition_performance_map == maps.decomposition
    assert mps.performance_metric_type == "top1" and mps.metric_type_performance_map_valid_flag
    assert mps.validation_set_performance == 1.0
    assert nnr.decode(data).keys() == model.keys()
    p0 = parse_stream(nnr.encode(model, performance_maps=maps, profile=0))[1].payload
    assert p0.pruning_performance_map == maps.pruning and p0.performance_metric_type is None
    with pytest.raises(ConfigError, match="PerformanceMaps"):
        nnr.encode(model, performance_maps={"pruning": 1})
    with pytest.raises(ConfigError, match="metric_type"):
        nnr.encode(model, performance_maps=PerformanceMaps(validation_set_performance=0.5))


def test_per_class_accuracies():
    model = make_model()
    ev = lambda t: {"top1": 0.9, "top1_per_class": [0.8, 1.0, 0.9]}     # noqa: E731
    m = measure_performance_maps(model, ev, MapLevels(sparsification=[0.5], unification=[0.2]))
    assert m.sparsification.spm_count_classes == [3]
    assert m.sparsification.spm_nn_class_accuracy == [pytest.approx([0.8, 1.0, 0.9])]
    assert m.unification.upm_class_bitmask == [3]
    data = nnr.encode(model, performance_maps=m)
    assert parse_stream(data)[1].payload.sparsification_performance_map == m.sparsification



def test_nncodec_decodes_decomposed_weights(nncodec, tmp_path):
    rng = np.random.default_rng(5)
    t = {"conv.weight": low_rank_weight(), "conv.weight_scaling": rng.uniform(.5, 2, 64),
         "conv.bias": rng.normal(size=64), "fc.weight": low_rank_weight((40, 96), 5)}
    t = {k: np.asarray(v, np.float32) for k, v in t.items()}
    cases = {
        "block_scan1": dict(blocks={"conv.weight": {"weight.ls": "conv.weight_scaling",
                                                    "bias": "conv.bias"}}, scan_order=1),
        "block_scan2_nodq": dict(blocks={"conv.weight": {"bias": "conv.bias"}}, scan_order=2,
                                 dq=False),
        "separate": dict(),
        "separate_codebook": dict(codebook="on"),
    }
    for name, options in cases.items():
        data = nnr.encode(t, low_rank=0.05, qp=-42, **options)
        path = tmp_path / f"{name}.nnc"
        path.write_bytes(data)
        r = run_dc_driver(nncodec, "decode", path, tmp_path / f"{name}.npz", "--weights",
                  "conv.weight,fc.weight")
        assert r.returncode == 0, f"{name}: {r.stderr[-800:]}"
        ours = nnr.decode(data)
        with np.load(tmp_path / f"{name}.npz") as z:
            assert sorted(z.files) == sorted(ours), name
            for k in ours:
                np.testing.assert_array_equal(z[k], ours[k], err_msg=f"{name}: {k}")


def test_nncodec_cannot_decode_separate_g_h_without_block_ids(nncodec, tmp_path):
    path = tmp_path / "s.nnc"
    path.write_bytes(nnr.encode({"w": low_rank_weight()}, low_rank=0.05))
    r = run_dc_driver(nncodec, "decode", path, tmp_path / "s.npz")
    assert r.returncode != 0 and "weight_param" in r.stderr      # NNCodec 2.1.3's own bug


def test_nncodec_parses_performance_maps(nncodec, tmp_path, maps):
    path = tmp_path / "m.nnc"
    path.write_bytes(nnr.encode(make_model(), performance_maps=maps))
    r = run_dc_driver(nncodec, "maps", path, tmp_path / "m.json")
    assert r.returncode == 0, r.stderr[-800:]
    got = json.loads((tmp_path / "m.json").read_text())["mps"]
    spm = got["sparsification_performance_map"]
    assert spm["spm_count_thresholds"] == 3
    assert spm["sparsification_threshold"] == [0.5, 1.0]
    assert spm["non_zero_ratio"] == maps.sparsification.non_zero_ratio
    assert spm["spm_nn_accuracy"] == maps.sparsification.spm_nn_accuracy
    ppm = got["pruning_performance_map"]
    assert ppm["pruning_ratio"] == maps.pruning.pruning_ratio
    assert ppm["ppm_nn_accuracy"] == maps.pruning.ppm_nn_accuracy
    upm = got["unification_performance_map"]
    # NNCodec sizes the array by the count and fills count - 1 entries
    assert upm["block_dimensions"][0][:3] == [2, 2, 0] and upm["unification_threshold"] == [0.5]
    dpm = got["decomposition_performance_map"]
    assert dpm["mse_threshold"] == maps.decomposition.mse_threshold
    assert dpm["nn_reduction_ratio"] == maps.decomposition.nn_reduction_ratio
