"""safetensors files (``.safetensors``), read and written by nnr itself.

The format is small (an 8-byte little-endian header length, a JSON header, one byte buffer),
so this adapter needs no package; files it writes load with the ``safetensors`` package.
float32/float16/bfloat16/float64 and integer/bool tensors are supported; ``__metadata__`` is
kept. The topology (storage format 0, ``"format": "safetensors"``) lists names, dtypes and
shapes in file order, the metadata, and the tensors nnr cannot code.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any, BinaryIO, Mapping

import numpy as np

from nnr.adapters._common import (bf16_to_f32, f32_to_bf16, json_topology, model_from_entries,
                                  read_json_topology, roles_from_names, tensor_entries)
from nnr.bitstream.enums import TopologyStorageFormat
from nnr.codec import DecodedStream
from nnr.encoder import Topology
from nnr.errors import ConfigError
from nnr.model import Model

__all__ = ["load", "save", "loads", "dumps", "to_tensors", "from_tensors", "topology_for",
           "from_stream"]

NAME = "safetensors"
MAX_HEADER = 100 << 20
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64",
           "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool"}
_CODES = {v: k for k, v in _DTYPES.items()}


def _bad(why: str) -> ConfigError:
    return ConfigError(f"not a valid safetensors file: {why}")


def _header(data: memoryview) -> tuple[dict[str, Any], int]:
    if len(data) < 8:
        raise _bad("shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER, len(data) - 8):
        raise _bad(f"header of {n} bytes in a file of {len(data)}")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _bad("header is not a JSON object")
    return header, 8 + n


def _tensor(name: str, info: Any, buf: memoryview) -> tuple[np.ndarray, str]:
    try:
        dtype = _DTYPES[info["dtype"]]
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise _bad(f"bad entry for tensor {name!r}") from None
    item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    if not 0 <= begin <= end <= len(buf) or any(d < 0 for d in shape) \
            or end - begin != item * int(np.prod(shape, dtype=np.int64)):
        raise _bad(f"tensor {name!r}: offsets {begin}..{end} do not fit its shape or the file")
    raw = buf[begin:end]
    if dtype == "bfloat16":
        return bf16_to_f32(np.frombuffer(raw, "<u2")).reshape(shape), dtype
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(shape).copy(), dtype


def loads(data: bytes | bytearray | memoryview) -> Model:
    """A Model of a safetensors file's bytes (bfloat16 tensors as float32 arrays)."""
    view = memoryview(data)
    header, start = _header(view)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise _bad("__metadata__ is not an object")
    model = Model(format=NAME, metadata={"__metadata__": {str(k): str(v) for k, v in meta.items()}})
    for name, info in header.items():
        model.tensors[name], model.dtypes[name] = _tensor(name, info, view[start:])
    _set_roles(model)
    return model


def _set_roles(model: Model) -> None:
    model.roles, model.blocks = roles_from_names({n: a.shape for n, a in model.tensors.items()})


def load(path: str | os.PathLike[str], **_: Any) -> Model:
    with open(path, "rb") as f:
        return loads(f.read())


def _raw(array: np.ndarray, dtype: str) -> bytes:
    if dtype == "bfloat16":
        return f32_to_bf16(array).astype("<u2").tobytes()
    return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def dumps(model: Model) -> bytes:
    """The safetensors bytes of ``model`` (tensors in its order, 8-byte aligned header)."""
    header: dict[str, Any] = {}
    meta = (model.metadata or {}).get("__metadata__")
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    blobs, offset = [], 0
    for name, array in model.tensors.items():
        dtype = model.dtype(name)
        if dtype not in _CODES:
            raise ConfigError(f"tensor {name!r}: safetensors has no dtype {dtype}")
        blob = _raw(array, dtype)
        header[name] = {"dtype": _CODES[dtype], "shape": [int(d) for d in array.shape],
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(len(text) + 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save(model: Model, path: str | os.PathLike[str] | BinaryIO, **_: Any) -> None:
    data = dumps(model)
    if hasattr(path, "write"):
        path.write(data)  # type: ignore[union-attr]
        return
    with open(path, "wb") as f:
        f.write(data)


def to_tensors(obj: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Model:
    """A Model of ``{name: array}`` (numpy arrays, or torch tensors of any dtype)."""
    model = Model(format=NAME, metadata={"__metadata__": dict(metadata or {})})
    for name, value in obj.items():
        if type(value).__module__.startswith("torch"):
            from nnr.adapters.torch import tensor_to_numpy
            model.tensors[name], model.dtypes[name] = tensor_to_numpy(value)
        else:
            model.tensors[name] = np.asarray(value)
    _set_roles(model)
    return model


def from_tensors(model: Model) -> dict[str, np.ndarray]:
    return dict(model.tensors)


def topology_for(model: Model, inline: list[str]) -> Topology:
    return json_topology(TopologyStorageFormat.UNREC,
                         {"format": NAME, "tensors": tensor_entries(model, inline),
                          "metadata": model.metadata.get("__metadata__") or {}})


def from_stream(decoded: DecodedStream) -> Model:
    doc = read_json_topology(decoded.topology) or {}
    if not isinstance(doc.get("tensors"), list):
        model = Model(tensors=dict(decoded.tensors), format=NAME)
    else:
        model = model_from_entries(doc["tensors"], decoded.tensors, NAME)
    if doc.get("format") == NAME:
        model.metadata = {"__metadata__": dict(doc.get("metadata") or {})}
    model.topology = decoded.topology
    _set_roles(model)
    return model
