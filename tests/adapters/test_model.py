"""Framework-neutral parts: Model, roles and blocks, registry, topology packing, dtypes, the
numpy and safetensors adapters (no framework needed)."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

import nnr
from nnr import adapters
from nnr.adapters import _common
from nnr.adapters import numpy as npa
from nnr.adapters import safetensors as sta
from nnr.model import Model


def _conv_bn_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"conv.weight": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
            "conv.bias": rng.normal(size=8).astype(np.float32),
            "bn.weight": rng.uniform(0.5, 1.5, 8).astype(np.float32),
            "bn.bias": rng.normal(size=8).astype(np.float32),
            "bn.running_mean": rng.normal(size=8).astype(np.float32),
            "bn.running_var": rng.uniform(0.5, 2, 8).astype(np.float32),
            "bn.num_batches_tracked": np.array(7, dtype=np.int64),
            "fc.weight": rng.normal(size=(4, 8)).astype(np.float32),
            "norm.weight": np.ones(4, np.float32)}


def test_roles_and_blocks_from_names():
    state = _conv_bn_state()
    roles, blocks = _common.roles_from_names({n: a.shape for n, a in state.items()})
    assert roles["conv.weight"] == "weight" and roles["conv.bias"] == "bias"
    assert roles["bn.running_var"] == "bn.var" and roles["bn.weight"] == "bn.gamma"
    assert "norm.weight" not in roles and "bn.num_batches_tracked" not in roles
    assert blocks == {"conv.weight": {"bias": "conv.bias", "bn.gamma": "bn.weight",
                                      "bn.beta": "bn.bias", "bn.mean": "bn.running_mean",
                                      "bn.var": "bn.running_var"}}


def test_valid_blocks_drop_bad_members():
    state = _conv_bn_state()
    m = Model(tensors=state, blocks={"conv.weight": {"bias": "conv.bias", "bn.mean": "bn.running_mean"},
                                     "fc.weight": {"bias": "conv.bias"}})
    # batch-norm without all four tensors is dropped; a tensor joins one block only
    assert m.valid_blocks() == {"conv.weight": {"bias": "conv.bias"}}
    assert m.valid_blocks(exclude=["conv.bias"]) == {}


def test_blocks_auto_codes_block_units():
    model = sta.to_tensors(_conv_bn_state())
    data = adapters.encode_model(model, blocks="auto")
    info = nnr.inspect(data)
    assert "block" in info.tools
    back = adapters.decode_model(data)
    assert list(back.tensors) == list(model.tensors)
    assert back.tensors["bn.num_batches_tracked"].dtype == np.int64
    assert int(back.tensors["bn.num_batches_tracked"]) == 7


def test_registry():
    assert adapters.format_of_path("m.pth") == "torch"
    assert adapters.format_of_path("dir/model.ONNX") == "onnx"
    assert adapters.format_of_path("w.keras") == "tensorflow"
    assert adapters.format_of_path("x.safetensors") == "safetensors"
    assert adapters.format_of_path("m.nnef.tgz") == "nnef"
    assert adapters.format_of_path("m.xyz") is None
    assert adapters.get("pytorch").NAME == "torch"
    with pytest.raises(nnr.ConfigError, match="unknown model format"):
        adapters.get("caffe")


def test_topology_is_deflated_when_smaller_and_inflates():
    doc = {"format": "numpy", "tensors": [{"name": f"t{i}", "dtype": "float16", "shape": [4]}
                                         for i in range(50)]}
    top = _common.json_topology(0, doc)
    assert top.compression_format == 1
    assert _common.read_json_topology(top)["tensors"] == doc["tensors"]
    raw = nnr.Topology(0, zlib.compress(b"{}", 9)[2:-4], 1)  # raw deflate is accepted too
    assert _common.unpack_topology(raw) == b"{}"
    with pytest.raises(nnr.NonConformingBitstreamError):
        _common.unpack_topology(nnr.Topology(0, b"not deflate", 1))


def test_bfloat16_conversion_rounds_to_nearest_even():
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38], np.float32)
    bits = _common.f32_to_bf16(x)
    assert bits.tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F62]
    assert np.array_equal(_common.bf16_to_f32(bits)[[0, 3]], x[[0, 3]])


def test_numpy_plain_arrays_have_no_topology():
    t = {"w": np.ones((3, 4), np.float32), "i": np.arange(5, dtype=np.int32)}
    assert adapters.encode_model(npa.to_tensors(t)) == nnr.encode(t)


def test_numpy_dtypes_and_uncodable_tensors_come_back():
    t = {"h": np.linspace(-1, 1, 12, dtype=np.float16).reshape(3, 4),
         "big": np.array([1 << 40, -5], np.int64), "mask": np.array([True, False, True]),
         "nan": np.array([np.nan, -np.inf, 1.0], np.float32), "u8": np.arange(9, dtype=np.uint8)}
    back = adapters.decode_model(adapters.encode_model(npa.to_tensors(t), lossless=True))
    assert list(back.tensors) == list(t)
    for name, value in t.items():
        assert back.tensors[name].dtype == value.dtype, name
        np.testing.assert_array_equal(back.tensors[name], value)


def test_lossless_raw_float_is_bit_exact():
    rng = np.random.default_rng(3)
    t = {"w": rng.normal(size=(17, 9)).astype(np.float32), "b": rng.normal(size=9).astype(np.float32)}
    data = nnr.encode(t, raw_float=True)
    assert {x.payload_type for x in nnr.inspect(data).tensors} == {"RAW_FLOAT"}
    out = nnr.decode(data)
    assert all(out[k].tobytes() == v.tobytes() for k, v in t.items())
    with pytest.raises(nnr.ConfigError, match="blocks"):
        nnr.encode(t, raw_float=["b"], blocks={"w": {"bias": "b"}})


def test_safetensors_roundtrip_dtypes_and_metadata(tmp_path):
    rng = np.random.default_rng(2)
    m = Model(format="safetensors", metadata={"__metadata__": {"format": "pt", "who": "me"}})
    m.tensors = {"a.weight": rng.normal(size=(6, 5)).astype(np.float32),
                 "a.bias": rng.normal(size=6).astype(np.float16),
                 "emb": _common.bf16_to_f32(_common.f32_to_bf16(rng.normal(size=(4, 3)))),
                 "ids": np.arange(6, dtype=np.int64), "flag": np.array([True, False])}
    m.dtypes = {"emb": "bfloat16"}
    path = tmp_path / "m.safetensors"
    sta.save(m, path)
    again = sta.load(path)
    assert again.metadata == m.metadata and again.dtype("emb") == "bfloat16"
    back = adapters.decode_model(adapters.encode_model(again, lossless=True))
    sta.save(back, tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == path.read_bytes()


def _file(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


_ENTRY = json.dumps({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()


@pytest.mark.parametrize("blob, why", [
    (b"\x01", "shorter"), (struct.pack("<Q", 1 << 40) + b"{}", "header of"),
    (_file(b"[]"), "not a JSON object"), (_file(_ENTRY[:-3]), "JSON"),
    (_file(_ENTRY, b"\0" * 12), "offsets"), (_file(_ENTRY.replace(b"F32", b"F99")), "bad entry"),
])
def test_safetensors_rejects_malformed_files(blob, why):
    with pytest.raises(nnr.ConfigError, match=why):
        sta.loads(blob)


def test_missing_framework_names_the_extra(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "h5py" or name.startswith("h5py."):
            raise ImportError("no h5py")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.delitem(__import__("sys").modules, "h5py", raising=False)
    with pytest.raises(nnr.UnsupportedFeatureError, match=r"pip install 'nnr\[tensorflow\]'"):
        adapters.get("tensorflow").load("whatever.h5")


def test_graph_formats_need_their_topology(tmp_path):
    data = nnr.encode({"w": np.ones((2, 2), np.float32)})
    model = adapters.decode_model(data)
    with pytest.raises(nnr.ConfigError, match="no NNEF graph"):
        adapters.save(model, tmp_path / "x.nnef")
    with pytest.raises(nnr.ConfigError, match="Keras HDF5"):
        adapters.get("tensorflow").topology_for(model, [])
