"""File-to-file streaming: same bytes and tensors as in-memory coding, bounded inputs, errors."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import nnr
from nnr.errors import BitstreamError, ConfigError
from nnr.streaming import SafetensorsReader, decode_file, encode_file


def _model():
    rng = np.random.default_rng(11)
    return {"a.weight": rng.standard_normal((40, 30)).astype(np.float32) * 0.1,
            "a.bias": rng.standard_normal(40).astype(np.float32) * 0.01,
            "b.weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
            "steps": np.arange(7, dtype=np.int32)}


def _write_safetensors(path, tensors, metadata=None):
    codes = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32", np.dtype(np.float16): "F16"}
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": codes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(blobs))


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_encode_file_equals_in_memory_encode(tmp_path, fmt):
    m = _model()
    src = tmp_path / f"m.{fmt}"
    if fmt == "npz":
        np.savez(src, **m)
    else:
        _write_safetensors(src, m, {"format": "pt"})
    size = encode_file(src, tmp_path / "m.nnr", qp=-40, scan_order=1)
    data = (tmp_path / "m.nnr").read_bytes()
    assert size == len(data) and data == nnr.encode(m, qp=-40, scan_order=1)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_decode_file_equals_in_memory_decode(tmp_path, fmt):
    m = _model()
    data = nnr.encode(m, qp=-40, scan_order=1, codebook="auto")
    (tmp_path / "m.nnr").write_bytes(data)
    out = tmp_path / f"d.{fmt}"
    assert decode_file(tmp_path / "m.nnr", out, threads=2) == len(m)
    want = nnr.decode(data)
    got = dict(np.load(out)) if fmt == "npz" else {k: v for k, v in SafetensorsReader(out).items()}
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k])
    decode_file(tmp_path / "m.nnr", tmp_path / "one.npz", names=["b.weight"])
    assert list(np.load(tmp_path / "one.npz")) == ["b.weight"]


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
@pytest.mark.parametrize("blocks", [False, True])
def test_decode_file_recomposes_low_rank_weights(tmp_path, fmt, blocks):
    """As a decoded model: W = G @ H under the weight's name, by default; G and H on request."""
    rng = np.random.default_rng(12)
    m = _model()
    m["a.weight"] = (rng.standard_normal((40, 3)) @ rng.standard_normal((3, 30))).astype(np.float32)
    options = {"blocks": {"a.weight": {"bias": "a.bias"}}} if blocks else {}
    data = nnr.encode(m, qp=-40, low_rank={"a.weight": 0.01}, **options)
    (tmp_path / "m.nnr").write_bytes(data)
    want = nnr.decode_stream(data, recompose=True).tensors
    assert "a.weight" in want and "a.weight_G" not in want
    out = tmp_path / f"d.{fmt}"
    assert decode_file(tmp_path / "m.nnr", out) == len(want)
    got = dict(np.load(out)) if fmt == "npz" else dict(SafetensorsReader(out).items())
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
    one = tmp_path / f"one.{fmt}"
    assert decode_file(tmp_path / "m.nnr", one, names=["a.weight"]) == 1
    got = dict(np.load(one)) if fmt == "npz" else dict(SafetensorsReader(one).items())
    assert list(got) == ["a.weight"] and np.array_equal(got["a.weight"], want["a.weight"])
    raw = nnr.decode(data)
    assert decode_file(tmp_path / "m.nnr", one, recompose=False) == len(raw)
    got = dict(np.load(one)) if fmt == "npz" else dict(SafetensorsReader(one).items())
    assert list(got) == list(raw) and "a.weight_G" in got


def test_bfloat16_and_float16_safetensors_inputs(tmp_path):
    w = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    bf16 = (w.view(np.uint32) >> 16).astype(np.uint16)
    blob = json.dumps({"w": {"dtype": "BF16", "shape": [8, 8], "data_offsets": [0, 128]}}).encode()
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bf16.tobytes())
    reader = SafetensorsReader(tmp_path / "b.safetensors")
    np.testing.assert_array_equal(reader["w"], (bf16.astype(np.uint32) << 16).view(np.float32))
    reader.close()
    encode_file(tmp_path / "b.safetensors", tmp_path / "b.nnr", qp=-50)
    assert nnr.load(tmp_path / "b.nnr")["w"].shape == (8, 8)


def test_truncated_stream_leaves_no_output(tmp_path):
    data = nnr.encode(_model())
    (tmp_path / "t.nnr").write_bytes(data[: len(data) - 50])
    with pytest.raises(BitstreamError):
        decode_file(tmp_path / "t.nnr", tmp_path / "t.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.nnr"]
    with pytest.raises(ConfigError, match="no such file"):
        encode_file(tmp_path / "missing.npz", tmp_path / "x.nnr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.nnr"]
