"""Keras / TensorFlow weights in HDF5: ``.h5``/``.hdf5`` (Keras 2 full models or weights) and
``.keras`` archives (Keras 3: a zip with ``model.weights.h5``), read with h5py alone
(TensorFlow is not needed).

Every numeric dataset is a tensor, named by its HDF5 path (``model_weights/conv2d/conv2d/
kernel:0``). The topology (storage format 4, TEF) is JSON: the HDF5 tree (groups, datasets
with dtype and shape, every attribute with its HDF5 string or numeric type, so
``model_config``, ``layer_names`` and ``weight_names`` come back as Keras wrote them), string
datasets, and for ``.keras`` the other archive members (``config.json``, ``metadata.json``).
"""
from __future__ import annotations

import base64
import io
import os
import zipfile
from typing import Any

import numpy as np

from nnr.adapters._common import (from_inline, inline_tensor, json_topology, model_from_entries,
                                  read_json_topology, require, tensor_entries)
from nnr.bitstream.enums import TopologyStorageFormat
from nnr.codec import DecodedStream
from nnr.encoder import Topology
from nnr.errors import ConfigError
from nnr.model import Model

__all__ = ["load", "save", "to_tensors", "from_tensors", "topology_for", "from_stream"]

NAME = "tensorflow"
_WEIGHTS = "model.weights.h5"
_LEAF_ROLES = {"kernel": "weight", "depthwise_kernel": "weight", "pointwise_kernel": "weight",
               "embeddings": "weight", "bias": "bias", "gamma": "bn.gamma", "beta": "bn.beta",
               "moving_mean": "bn.mean", "moving_variance": "bn.var"}


def _h5py() -> Any:
    return require("h5py", "tensorflow", "Keras HDF5")


# ------------------------------------------------------------------------------ attributes

def _encode_value(value: Any, dtype: np.dtype, shape: tuple[int, ...] | None) -> dict[str, Any]:
    h5py = _h5py()
    info = h5py.check_string_dtype(dtype)
    if info is not None:
        flat = np.asarray(value, dtype=object).ravel().tolist() if shape else [value]
        texts = [v.decode(info.encoding, "surrogateescape") if isinstance(v, bytes) else str(v)
                 for v in flat]
        return {"kind": "str", "encoding": info.encoding, "length": info.length,
                "shape": list(shape) if shape else None, "values": texts}
    if dtype.kind in "biuf":
        return {"kind": "array", "scalar": not shape, **inline_tensor(np.asarray(value, dtype))}
    raise ConfigError(f"HDF5 values of type {dtype} are not supported")


def _decode_value(doc: dict[str, Any]) -> tuple[Any, Any]:
    """(value, dtype) to write with h5py."""
    h5py = _h5py()
    if doc["kind"] == "str":
        dtype = h5py.string_dtype(doc["encoding"], doc["length"])
        values = doc["values"]
        if doc["length"] is not None:
            values = [v.encode(doc["encoding"], "surrogateescape") for v in values]
        if doc["shape"] is None:
            return values[0], dtype
        return np.array(values, dtype=object).reshape(doc["shape"]), dtype
    array = from_inline(doc)
    return (array.reshape(()) if doc.get("scalar") else array), array.dtype


def _attrs(obj: Any) -> dict[str, Any]:
    out = {}
    for key in obj.attrs:
        aid = obj.attrs.get_id(key)
        out[key] = _encode_value(obj.attrs[key], aid.dtype, aid.shape)
    return out


# ---------------------------------------------------------------------------------- reading

def _walk(group: Any, model: Model, nodes: list[dict[str, Any]]) -> None:
    for key in group:
        obj = group[key]
        path = obj.name.lstrip("/")
        if isinstance(obj, _h5py().Group):
            nodes.append({"group": path, "attrs": _attrs(obj)})
            _walk(obj, model, nodes)
            continue
        node: dict[str, Any] = {"dataset": path, "attrs": _attrs(obj)}
        if obj.dtype.kind in "biuf":
            model.tensors[path] = obj[()]
            if model.tensors[path].ndim == 0:
                node["scalar"] = True
                model.tensors[path] = model.tensors[path].reshape(1)
        else:
            node["value"] = _encode_value(obj[()], obj.dtype, obj.shape)
        nodes.append(node)


def _set_roles(model: Model) -> None:
    by_group: dict[str, dict[str, str]] = {}
    for name in model.tensors:
        parent, _, leaf = name.rpartition("/")
        role = _LEAF_ROLES.get(leaf.split(":")[0])
        if role is not None:
            model.roles[name] = role
            by_group.setdefault(parent, {})[role] = name
    for members in by_group.values():
        weight = members.pop("weight", None)
        if weight is not None and members:
            model.blocks[weight] = members


def to_tensors(h5file: Any) -> Model:
    """A Model of an open ``h5py.File`` (or group)."""
    model = Model(format=NAME)
    nodes: list[dict[str, Any]] = []
    _walk(h5file, model, nodes)
    model.metadata["h5"] = {"attrs": _attrs(h5file), "nodes": nodes}
    _set_roles(model)
    return model


def load(path: str | os.PathLike[str], **_: Any) -> Model:
    h5py = _h5py()
    if zipfile.is_zipfile(path):
        return _load_keras_archive(path)
    try:
        with h5py.File(path, "r") as f:
            return to_tensors(f)
    except OSError as exc:
        if not os.path.exists(path):
            raise
        raise ConfigError(f"cannot read '{path}' as HDF5: {exc}") from None


def _load_keras_archive(path: str | os.PathLike[str]) -> Model:
    h5py = _h5py()
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if _WEIGHTS not in names:
            raise ConfigError(f"'{path}' is a zip but not a .keras archive (no {_WEIGHTS})")
        with h5py.File(io.BytesIO(z.read(_WEIGHTS)), "r") as f:
            model = to_tensors(f)
        model.metadata["archive"] = [
            {"name": n, "data": base64.b64encode(z.read(n)).decode("ascii")}
            if n != _WEIGHTS else {"name": n} for n in names]
    return model


# ---------------------------------------------------------------------------------- writing

def _set_attrs(obj: Any, attrs: dict[str, Any]) -> None:
    for key, doc in attrs.items():
        value, dtype = _decode_value(doc)
        obj.attrs.create(key, value, dtype=dtype)


def from_tensors(model: Model, h5file: Any) -> None:
    """Write ``model`` into an open, empty ``h5py.File``."""
    tree = model.metadata.get("h5")
    if tree is None:
        raise ConfigError("this model has no Keras HDF5 structure (it was not coded from a "
                          ".h5/.keras file); decode it to a tensor format instead")
    _set_attrs(h5file, tree["attrs"])
    for node in tree["nodes"]:
        if "group" in node:
            obj = h5file.require_group(node["group"])
        elif "value" in node:
            value, dtype = _decode_value(node["value"])
            obj = h5file.create_dataset(node["dataset"], data=value, dtype=dtype)
        else:
            name = node["dataset"]
            array = model.tensors[name]
            if node.get("scalar"):
                array = array.reshape(())
            obj = h5file.create_dataset(name, data=array)
        _set_attrs(obj, node["attrs"])


def _h5_bytes(model: Model) -> bytes:
    buf = io.BytesIO()
    with _h5py().File(buf, "w") as f:
        from_tensors(model, f)
    return buf.getvalue()


def save(model: Model, path: str | os.PathLike[str], **_: Any) -> None:
    """Write the .h5 file (or the .keras archive, when the model came from one)."""
    archive = model.metadata.get("archive")
    if archive is None:
        with open(path, "wb") as f:
            f.write(_h5_bytes(model))
        return
    with zipfile.ZipFile(path, "w") as z:
        for member in archive:
            data = _h5_bytes(model) if member["name"] == _WEIGHTS \
                else base64.b64decode(member["data"])
            z.writestr(member["name"], data)


def topology_for(model: Model, inline: list[str]) -> Topology:
    if model.metadata.get("h5") is None:
        raise ConfigError("this model has no Keras HDF5 structure")
    doc: dict[str, Any] = {"format": NAME, "tensors": tensor_entries(model, inline),
                           "h5": model.metadata["h5"]}
    if model.metadata.get("archive"):
        doc["archive"] = model.metadata["archive"]
    return json_topology(TopologyStorageFormat.TEF, doc)


def from_stream(decoded: DecodedStream) -> Model:
    doc = read_json_topology(decoded.topology) or {}
    if not isinstance(doc.get("tensors"), list):
        return Model(tensors=dict(decoded.tensors), topology=decoded.topology, format=NAME)
    model = model_from_entries(doc["tensors"], decoded.tensors, NAME)
    for key in ("h5", "archive"):
        if doc.get(key) is not None:
            model.metadata[key] = doc[key]
    model.topology = decoded.topology
    _set_roles(model)
    return model
