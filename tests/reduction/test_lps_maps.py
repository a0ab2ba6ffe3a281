"""Layer performance maps: measured per layer, written in NNR_LPS units before the layer's
NDUs, read back by nnr (read_performance_maps, inspect, decode_stream, nnr info), decoding
unchanged by them; what NNCodec 2.1.3 does with such streams."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import nnr
from nnr.bitstream.enums import NnrUnitType
from nnr.bitstream.stream import parse_stream
from nnr.bitstream.units.performance_maps import SparsificationPerformanceMap
from nnr.decoder import decode_recomposed
from nnr.errors import ConfigError
from nnr.reduction import (LayerMaps, MapLevels, PerformanceMaps, magnitude_sparsify,
                           measure_performance_maps, prune_channels, read_performance_maps,
                           unify)
from tests.reduction.conftest import make_model, run_dc_driver, top1_agreement
from tests.reduction.test_sparsify_prune import GROUPS

WEIGHTS = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
LEVELS = MapLevels(sparsification=[0.5, 1.0], pruning=[0.25, 0.5], groups=GROUPS,
                   unification=[0.5])



@pytest.fixture(scope="module")
def maps() -> PerformanceMaps:
    model = make_model()
    return measure_performance_maps(model, top1_agreement(model), LEVELS, qp=-40, layers=True)


def _types(data: bytes) -> list[str]:
    return [u.type_name for u in parse_stream(data)]


def _without_lps(maps: PerformanceMaps) -> PerformanceMaps:
    return dataclasses.replace(maps, layers=None)


# ------------------------------------------------------------------------------ measuring

def test_layer_maps_measure_each_layer_alone(maps):
    model = make_model()
    ev = top1_agreement(model)
    assert list(maps.layers) == WEIGHTS
    coded = lambda t: ev(nnr.decode(nnr.encode(t, qp=-40)))["top1"]     # noqa: E731
    for name, lm in maps.layers.items():
        s = lm.sparsification
        assert s.spm_count_thresholds == 3 and s.sparsification_threshold == [0.5, 1.0]
        for i, t in enumerate((0.5, 1.0)):
            reduced = magnitude_sparsify(model, threshold=t, names=[name])
            w = reduced[name]
            assert s.non_zero_ratio[i] == pytest.approx(np.count_nonzero(w) / w.size)
            assert s.spm_nn_accuracy[i] == pytest.approx(coded(reduced))
            # only this layer was touched
            assert all(np.array_equal(reduced[n], model[n]) for n in model if n != name)
        u = lm.unification
        assert u.unification_threshold == [0.5] and u.block_dimensions == [[2, 2, 0]]
        assert u.upm_nn_accuracy[0] == pytest.approx(
            coded(unify(model, 0.5, names=[name])[0]))
    # pruning: the layer's own channel group; the ratio is of its output channels
    p = maps.layers["fc1.weight"].pruning
    assert p.pruning_ratio == pytest.approx([0.2, 0.4])            # 1 and 2 of 5 channels
    group = [g for g in GROUPS if g.producer == "fc1.weight"]
    assert p.ppm_nn_accuracy[1] == pytest.approx(
        coded(prune_channels(model, group, 0.5)[0]))
    assert maps.layers["conv1.weight"].pruning.pruning_ratio == pytest.approx([0.25, 0.5])
    assert maps.layers["fc2.weight"].pruning is None               # no group produces fc2
    # the model-wide maps are measured as before
    assert maps.sparsification.non_zero_ratio != maps.layers["fc1.weight"].sparsification \
        .non_zero_ratio


def test_layer_selection_and_default():
    model = make_model()
    ev = top1_agreement(model)
    levels = MapLevels(sparsification=[0.5])
    assert measure_performance_maps(model, ev, levels).layers is None      # opt-in
    some = measure_performance_maps(model, ev, levels, layers=["fc1.weight"])
    assert list(some.layers) == ["fc1.weight"]
    assert list(measure_performance_maps(model, ev, levels, layers="all").layers) == WEIGHTS
    with pytest.raises(ConfigError, match="no tensor named"):
        measure_performance_maps(model, ev, levels, layers=["nope"])
    with pytest.raises(ConfigError, match="two or more dimensions"):
        measure_performance_maps(model, ev, levels, layers=["fc1.bias"])


# ------------------------------------------------------------------------------ the stream

def test_lps_units_sit_before_their_layers(maps):
    model = make_model()
    data = nnr.encode(model, qp=-40, performance_maps=maps)
    units = parse_stream(data)
    lps = [i for i, u in enumerate(units) if u.unit_type == NnrUnitType.LPS]
    assert len(lps) == 4
    for i, name in zip(lps, WEIGHTS):
        nxt = units[i + 1]
        assert nxt.unit_type == NnrUnitType.NDU and nxt.header.topology_elem_ids == [name]
        p = units[i].payload
        assert p.sparsification_performance_map == maps.layers[name].sparsification
        assert p.pruning_performance_map == maps.layers[name].pruning
        assert p.unification_performance_map == maps.layers[name].unification
        # the LPS repeats the MPS quantization fields: the NDU qps mean the same either way
        mps = units[1].payload
        assert (p.lps_quantization_method_flags, p.lps_qp_density,
                p.lps_quantization_parameter) == (mps.mps_quantization_method_flags,
                                                  mps.mps_qp_density,
                                                  mps.mps_quantization_parameter)
    assert units[lps[3]].payload.lps_pruning_flag == 0          # fc2: no pruning map
    # absent unless asked for
    assert "NNR_LPS" not in _types(nnr.encode(model, qp=-40, performance_maps=_without_lps(maps)))
    assert "NNR_LPS" not in _types(nnr.encode(model, qp=-40))


@pytest.mark.parametrize("options", [dict(qp=-40), dict(qp=-30, qp_density=3, dq=False),
                                     dict(qp=-36, profile=0), dict(qp=-40, codebook="on")])
def test_decoding_is_identical_with_and_without_lps(maps, options):
    model = make_model()
    with_lps = nnr.encode(model, performance_maps=maps, **options)
    without = nnr.encode(model, performance_maps=_without_lps(maps), **options)
    # the stream is the LPS-free one plus the LPS units, byte for byte
    rest = b"".join(with_lps[u.offset:u.offset + u.size] for u in parse_stream(with_lps)
                    if u.unit_type != NnrUnitType.LPS)
    assert rest == without
    a, b = nnr.decode(with_lps), nnr.decode(without)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    info = nnr.inspect(with_lps)
    assert [t.qp for t in info.tensors] == [t.qp for t in nnr.inspect(without).tensors]


def test_maps_round_trip(maps):
    model = make_model()
    data = nnr.encode(model, qp=-40, performance_maps=maps)
    assert read_performance_maps(data) == maps
    info = nnr.inspect(data)
    assert "layer_performance_maps" in info.tools and "performance_maps" in info.tools
    assert list(info.layer_performance_maps) == WEIGHTS
    fc1 = info.layer_performance_maps["fc1.weight"]
    lm = maps.layers["fc1.weight"]
    assert [e["threshold"] for e in fc1["sparsification"]] == [0.5, 1.0]
    assert [e["non_zero_ratio"] for e in fc1["sparsification"]] == \
        lm.sparsification.non_zero_ratio
    assert [e["accuracy"] for e in fc1["sparsification"]] == lm.sparsification.spm_nn_accuracy
    assert [e["pruning_ratio"] for e in fc1["pruning"]] == lm.pruning.pruning_ratio
    assert [e["accuracy"] for e in fc1["unification"]] == lm.unification.upm_nn_accuracy
    assert "pruning" not in info.layer_performance_maps["fc2.weight"]
    assert "decomposition" not in fc1 and "metric" not in fc1
    assert info.to_dict()["layer_performance_maps"] == info.layer_performance_maps
    stream = nnr.decode_stream(data)
    assert stream.layer_performance_maps == info.layer_performance_maps
    assert stream.performance_maps == info.performance_maps
    assert nnr.decode_stream(nnr.encode(model)).layer_performance_maps == {}
    # layer maps alone (no model-wide map): the metric is still declared valid
    only = PerformanceMaps(metric_type="top1", layers={"fc1.weight": lm})
    data = nnr.encode(model, performance_maps=only)
    mps = parse_stream(data)[1].payload
    assert mps.metric_type_performance_map_valid_flag == 1 and not mps.mps_sparsification_flag
    assert read_performance_maps(data) == only


def test_decomposed_and_block_layers(maps):
    model = make_model()
    lm = {"fc1.weight": maps.layers["fc1.weight"], "conv2.weight": maps.layers["conv2.weight"]}
    pm = dataclasses.replace(maps, layers=lm)
    blocks = {"fc1.weight": {"bias": "fc1.bias"}}
    for options in (dict(low_rank=0.5), dict(low_rank=0.5, blocks=blocks), dict(blocks=blocks)):
        data = nnr.encode(model, qp=-40, performance_maps=pm, **options)
        plain = nnr.encode(model, qp=-40, performance_maps=_without_lps(pm), **options)
        units = parse_stream(data)
        i = next(i for i, u in enumerate(units) if u.unit_type == NnrUnitType.LPS
                 and units[i + 1].header.topology_elem_ids[0].startswith("fc1.weight"))
        if "low_rank" in options:      # before the G NDU (or the BLOCK NDU holding G, H)
            assert units[i + 1].header.topology_elem_ids[0] == "fc1.weight_G"
        assert set(read_performance_maps(data).layers) == set(lm), options
        assert set(nnr.inspect(data).layer_performance_maps) == set(lm)
        a, b = decode_recomposed(data), decode_recomposed(plain)
        assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="block of 'fc1.weight'"):
        nnr.encode(model, blocks=blocks, performance_maps=dataclasses.replace(
            maps, layers={"fc1.bias": lm["fc1.weight"]}))
    with pytest.raises(ConfigError, match="no tensor of that name"):
        nnr.encode(model, performance_maps=dataclasses.replace(
            maps, layers={"fc9.weight": lm["fc1.weight"]}))
    with pytest.raises(ConfigError, match="has no map"):
        nnr.encode(model, performance_maps=PerformanceMaps(layers={"fc1.weight": LayerMaps()}))
    with pytest.raises(ConfigError, match="LayerMaps"):
        nnr.encode(model, performance_maps=PerformanceMaps(layers={"fc1.weight": {}}))


def test_skipped_update_ndu_takes_no_lps():
    """In a differential update an all-zero tensor has no NDU: its LPS is left out too."""
    model = make_model()
    state = nnr.EncoderState()
    nnr.encode(model, state=state, qp=-40)
    update = {k: np.zeros_like(v) for k, v in model.items()}
    update["fc1.weight"] = np.full_like(model["fc1.weight"], 0.25)
    sp = SparsificationPerformanceMap(2, [0.5], [0.5], [0.9], [0], [0], [[]])
    pm = PerformanceMaps(metric_type="top1", layers={"conv2.weight": LayerMaps(sp),
                                                     "fc1.weight": LayerMaps(sp)})
    data = nnr.encode(update, state=state, differences=True, qp=-40, performance_maps=pm)
    units = parse_stream(data)
    assert _types(data).count("NNR_LPS") == 1
    assert list(read_performance_maps(data).layers) == ["fc1.weight"]
    i = _types(data).index("NNR_LPS")
    assert units[i + 1].header.topology_elem_ids == ["fc1.weight"]


# ------------------------------------------------------------------------------ the CLI

def test_cli_layer_maps(tmp_path, capsys, monkeypatch):
    from nnr.cli.main import main
    monkeypatch.delenv("NNR_DEBUG", raising=False)
    model = make_model()
    np.savez(tmp_path / "m.npz", **model)
    script = tmp_path / "ev.py"
    script.write_text(
        "from tests.reduction.conftest import forward, inputs, make_model\n"
        "X = inputs(200)\nREF = forward(make_model(), X).argmax(1)\n"
        "def evaluate(t):\n    return float((forward(t, X).argmax(1) == REF).mean())\n")
    base = ["encode", str(tmp_path / "m.npz"), "--qp", "-40", "--performance-maps", "--eval",
            str(script), "--map-levels", "sparsification=0.5,1"]
    assert main(base + ["-o", str(tmp_path / "a.nnr"), "--layer-maps",
                        "fc1.weight,conv2.weight"]) == 0
    assert "layer maps of 2 weights" in capsys.readouterr().err
    data = (tmp_path / "a.nnr").read_bytes()
    assert list(read_performance_maps(data).layers) == ["conv2.weight", "fc1.weight"]
    assert main(base + ["-o", str(tmp_path / "b.nnr"), "--layer-maps"]) == 0
    capsys.readouterr()
    all_layers = (tmp_path / "b.nnr").read_bytes()
    assert _types(all_layers).count("NNR_LPS") == 4
    assert main(base + ["-o", str(tmp_path / "c.nnr")]) == 0
    capsys.readouterr()
    assert "NNR_LPS" not in _types((tmp_path / "c.nnr").read_bytes())
    a, c = nnr.decode(all_layers), nnr.decode((tmp_path / "c.nnr").read_bytes())
    assert all(np.array_equal(a[k], c[k]) for k in c)
    assert main(["info", str(tmp_path / "a.nnr")]) == 0
    out = capsys.readouterr().out
    assert "layer_performance_maps" in out.splitlines()[1]
    text = out.split("layer performance maps of fc1.weight:")[1]
    assert "|w| < 1 RMS" in text and "top1" in text.splitlines()[1]
    assert main(["info", str(tmp_path / "a.nnr"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["layer_performance_maps"]
    assert [e["threshold"] for e in got["fc1.weight"]["sparsification"]] == [0.5, 1.0]
    assert main(["encode", str(tmp_path / "m.npz"), "-o", str(tmp_path / "d.nnr"),
                 "--layer-maps"]) == 1
    assert "--layer-maps needs --performance-maps" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "e.nnr"), "--layer-maps", "fc9.weight"]) == 1
    assert "no tensor 'fc9.weight'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ NNCodec


def test_nncodec_cannot_decode_lps_streams(nncodec, tmp_path, maps):
    """NNCodec 2.1.3 fails on any NNR_LPS unit (KeyError on a flag its LPS parser never
    reads). With that one field patched in, an LPS before the first NDU decodes bit-identical
    to nnr and its maps are parsed; a later LPS makes NNCodec drop the qps of the tensors
    decoded before it (its LPS handler resets them)."""
    model = make_model()
    first = dataclasses.replace(maps, layers={"conv1.weight": maps.layers["conv1.weight"]})
    later = dataclasses.replace(maps, layers={"fc1.weight": maps.layers["fc1.weight"]})
    for name, pm in (("first", first), ("later", later), ("all", maps)):
        path = tmp_path / f"{name}.nnc"
        path.write_bytes(nnr.encode(model, qp=-40, performance_maps=pm))
        r = run_dc_driver(nncodec, "decode", path, tmp_path / f"{name}.npz")
        assert r.returncode != 0 and "lps_decomposition_performance_map_flag" in r.stderr, name
    # the same stream without LPS units decodes (and equals nnr's output)
    path = tmp_path / "none.nnc"
    data = nnr.encode(model, qp=-40, performance_maps=_without_lps(maps))
    path.write_bytes(data)
    r = run_dc_driver(nncodec, "decode", path, tmp_path / "none.npz")
    assert r.returncode == 0, r.stderr[-800:]
    ours = nnr.decode(data)
    with np.load(tmp_path / "none.npz") as z:
        assert all(np.array_equal(z[k], ours[k]) for k in ours)
    # with the flag patched in
    r = run_dc_driver(nncodec, "decode", tmp_path / "first.nnc", tmp_path / "first.npz",
              "--patch-lps-flag")
    assert r.returncode == 0, r.stderr[-800:]
    ours = nnr.decode((tmp_path / "first.nnc").read_bytes())
    with np.load(tmp_path / "first.npz") as z:
        assert sorted(z.files) == sorted(ours)
        for k in ours:
            np.testing.assert_array_equal(z[k], ours[k], err_msg=k)
    r = run_dc_driver(nncodec, "maps", tmp_path / "first.nnc", tmp_path / "first.json",
              "--patch-lps-flag")
    assert r.returncode == 0, r.stderr[-800:]
    got = json.loads((tmp_path / "first.json").read_text())["lps"]
    spm = got["sparsification_performance_map"]
    lm = maps.layers["conv1.weight"]
    assert spm["sparsification_threshold"] == lm.sparsification.sparsification_threshold
    assert spm["spm_nn_accuracy"] == lm.sparsification.spm_nn_accuracy
    assert got["pruning_performance_map"]["pruning_ratio"] == lm.pruning.pruning_ratio
    r = run_dc_driver(nncodec, "decode", tmp_path / "later.nnc", tmp_path / "later.npz",
              "--patch-lps-flag")
    assert r.returncode != 0 and "KeyError: 'conv1.weight'" in r.stderr
