"""numpy ``.npz`` archives of named arrays.

A stream made from plain float32 / int32 arrays carries no topology (NNCodec's empty
``UNREC`` one), so it is exactly ``nnr.encode(arrays)``; other dtypes (float16, int64, bool,
...) and arrays nnr cannot code (NaN, strings, huge integers) are described in a JSON topology
(storage format 0, docs/adapters.md) and come back as they were.
"""
from __future__ import annotations

import io
import os
import zipfile
from typing import Any, Mapping

import numpy as np

from nnr.adapters._common import (json_topology, model_from_entries, read_json_topology,
                                  tensor_entries)
from nnr.bitstream.enums import TopologyStorageFormat
from nnr.codec import DecodedStream
from nnr.encoder import Topology
from nnr.errors import ConfigError
from nnr.model import Model

__all__ = ["load", "save", "to_tensors", "from_tensors", "topology_for", "from_stream"]

NAME = "numpy"
_PLAIN = (np.dtype(np.float32), np.dtype(np.int32))


def to_tensors(obj: Mapping[str, Any]) -> Model:
    """A Model of a mapping of names to arrays (no roles: names say nothing here)."""
    return Model.from_tensors(obj, format=NAME)


def from_tensors(model: Model) -> dict[str, np.ndarray]:
    """Name -> array, bfloat16 tensors as float32."""
    return dict(model.tensors)


def load(path: str | os.PathLike[str], **_: Any) -> Model:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ConfigError(f"'{path}' is a single .npy array, not an .npz archive")
            return to_tensors({name: npz[name] for name in npz.files})
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"cannot read '{path}' as .npz: {exc}") from None


def _member(name: str) -> str:
    """The archive member of a tensor: np.load reads it back under ``name``; names that would
    leave the archive root are refused."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or ".." in parts or not name:
        raise ConfigError(f"tensor name {name!r} is not a safe .npz member name")
    return name + ".npy"


def save(model: Model, path: str | os.PathLike[str] | io.IOBase, **_: Any) -> None:
    """Write an .npz entry by entry (np.savez would take names such as 'file' or
    'allow_pickle' as its own arguments)."""
    tensors = from_tensors(model)
    members = {name: _member(name) for name in tensors}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in tensors.items():
            with zf.open(members[name], "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(arr), allow_pickle=False)


def topology_for(model: Model, inline: list[str]) -> Topology | None:
    """None (the empty UNREC topology) when every tensor is a plain float32 or int32 array."""
    plain = all(model.dtype(n) == str(a.dtype) and a.dtype in _PLAIN
                for n, a in model.tensors.items())
    if plain and not inline:
        return None
    return json_topology(TopologyStorageFormat.UNREC,
                         {"format": NAME, "tensors": tensor_entries(model, inline)})


def from_stream(decoded: DecodedStream) -> Model:
    doc = read_json_topology(decoded.topology)
    if doc is None or not isinstance(doc.get("tensors"), list):
        return Model(tensors=dict(decoded.tensors), topology=decoded.topology, format=NAME)
    model = model_from_entries(doc["tensors"], decoded.tensors, NAME)
    model.metadata = dict(doc.get("metadata") or {})
    model.topology = decoded.topology
    return model
