"""Helpers shared by the adapters: lazy imports, dtypes, topology packing, inline tensors."""
from __future__ import annotations

import base64
import importlib
import json
import re
import zlib
from typing import Any, Iterable

import numpy as np

from nnr.encoder import Topology
from nnr.errors import ConfigError, NonConformingBitstreamError, UnsupportedFeatureError
from nnr.model import Model

__all__ = ["require", "pack_topology", "unpack_topology", "json_topology", "read_json_topology",
           "restore_dtype", "bf16_to_f32", "f32_to_bf16", "inline_tensor", "from_inline",
           "tensor_entries", "model_from_entries", "roles_from_names", "SCHEMA"]

#: Version tag of nnr's JSON topologies (docs/adapters.md).
SCHEMA = 1
#: A topology never inflates beyond this (deflate bombs).
MAX_TOPOLOGY_BYTES = 1 << 31


def require(module: str, extra: str, what: str | None = None) -> Any:
    """Import ``module`` or raise UnsupportedFeatureError with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UnsupportedFeatureError(
            f"{what or extra} support needs the '{module.split('.')[0]}' package: "
            f"pip install 'nnr[{extra}]'") from exc


# ------------------------------------------------------------------------------- topology

def pack_topology(storage_format: int, data: bytes, compress: bool = True) -> Topology:
    """A Topology holding ``data``; deflated (compression format 1, zlib RFC 1950) when that
    is smaller."""
    if compress:
        packed = zlib.compress(data, 9)
        if len(packed) < len(data):
            return Topology(int(storage_format), packed, 1)
    return Topology(int(storage_format), bytes(data), 0)


def unpack_topology(topology: Topology) -> bytes:
    """The topology's bytes, inflated if compressed (zlib, or raw deflate)."""
    if topology.compression_format == 0:
        return bytes(topology.data)
    if topology.compression_format != 1:
        raise UnsupportedFeatureError(
            f"topology_compression_format {topology.compression_format} is reserved")
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(topology.data, MAX_TOPOLOGY_BYTES)
        except zlib.error:
            continue
        if inflater.unconsumed_tail:
            raise NonConformingBitstreamError("the topology inflates beyond 2 GiB")
        return out
    raise NonConformingBitstreamError("topology_data is not deflate data")


def json_topology(storage_format: int, doc: dict[str, Any]) -> Topology:
    data = json.dumps({"nnr_topology": SCHEMA, **doc}, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")
    return pack_topology(storage_format, data)


def read_json_topology(topology: Topology | None) -> dict[str, Any] | None:
    """The JSON document of an nnr topology, or None for any other topology."""
    if topology is None:
        return None
    data = unpack_topology(topology)
    if not data.startswith(b"{"):
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("nnr_topology") != SCHEMA:
        return None
    return doc


# ---------------------------------------------------------------------------------- dtypes

def f32_to_bf16(a: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def restore_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """A decoded array in its original dtype (bfloat16 stays a float32 array; round it to
    bfloat16 with :func:`f32_to_bf16` when writing)."""
    if dtype == "bfloat16":
        return bf16_to_f32(f32_to_bf16(array))
    target = np.dtype(dtype)
    if target.kind == "b":
        return np.asarray(array) != 0
    if target.kind in "iu" and array.dtype.kind == "f":
        array = np.rint(array)
    return np.asarray(array).astype(target, copy=False)


def inline_tensor(array: np.ndarray) -> dict[str, Any]:
    """A tensor nnr cannot code (or too small to code), carried in a JSON topology."""
    a = np.ascontiguousarray(array)
    if a.dtype.kind not in "biufc":
        raise ConfigError(f"unsupported dtype {a.dtype} (numeric arrays only)")
    return {"dtype": a.dtype.str, "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes()).decode("ascii")}


def from_inline(doc: dict[str, Any]) -> np.ndarray:
    try:
        dtype, shape = np.dtype(doc["dtype"]), tuple(int(d) for d in doc["shape"])
        raw = base64.b64decode(doc["data"], validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise NonConformingBitstreamError(f"bad inline tensor in the topology: {exc}") from None


# ------------------------------------------------------------------- tensor lists in JSON

def tensor_entries(model: Model, inline: Iterable[str]) -> list[dict[str, Any]]:
    """One JSON entry per tensor (stream order): name, dtype, shape, role; the tensors in
    ``inline`` also carry their data."""
    inline = set(inline)
    out = []
    for name, array in model.tensors.items():
        e: dict[str, Any] = {"name": name, "dtype": model.dtype(name),
                             "shape": [int(d) for d in array.shape]}
        if model.role(name) != "unspecified":
            e["role"] = model.role(name)
        if name in inline:
            try:
                e["inline"] = inline_tensor(array)
            except ConfigError as exc:
                raise ConfigError(f"tensor {name!r}: {exc}") from None
        out.append(e)
    return out


def model_from_entries(entries: list[dict[str, Any]], decoded: dict[str, np.ndarray],
                       fmt: str) -> Model:
    """Rebuild a Model from the topology's tensor entries and the decoded tensors."""
    model = Model(format=fmt)
    for e in entries:
        name, dtype = str(e["name"]), str(e["dtype"])
        if "inline" in e:
            array = from_inline(e["inline"])
        elif name in decoded:
            array = restore_dtype(decoded[name], dtype)
        else:
            raise NonConformingBitstreamError(f"tensor {name!r} of the topology has no NDU")
        shape = tuple(int(d) for d in e.get("shape", array.shape))
        if array.shape != shape:
            if array.size != int(np.prod(shape, dtype=np.int64)):
                raise NonConformingBitstreamError(
                    f"tensor {name!r}: decoded shape {array.shape}, topology says {shape}")
            array = array.reshape(shape)
        model.tensors[name] = array
        model.dtypes[name] = dtype
        if e.get("role"):
            model.roles[name] = str(e["role"])
    return model


# --------------------------------------------------------------------------- naming roles

_BN_SUFFIX = {"weight": "bn.gamma", "bias": "bn.beta", "running_mean": "bn.mean",
              "running_var": "bn.var"}
_NAME = re.compile(r"^(?P<prefix>.*?)(?P<sep>[./]?)(?P<leaf>[^./]+)$")


def roles_from_names(shapes: dict[str, tuple[int, ...]]
                     ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Roles and candidate blocks of PyTorch-style names (``conv.weight``, ``conv.bias``,
    ``bn.weight/bias/running_mean/running_var``): a weight with 2+ dimensions and its bias
    form a block, and a batch-norm module that follows it (the next module, same number of
    channels) joins the block."""
    modules: dict[str, dict[str, str]] = {}
    for name in shapes:
        m = _NAME.match(name)
        modules.setdefault(m["prefix"] + m["sep"], {})[m["leaf"]] = name
    roles: dict[str, str] = {}
    blocks: dict[str, dict[str, str]] = {}
    last_weight: str | None = None
    for leaves in modules.values():
        if "running_mean" in leaves and "running_var" in leaves:
            bn = {_BN_SUFFIX[k]: v for k, v in leaves.items() if k in _BN_SUFFIX}
            roles.update({v: k for k, v in bn.items()})
            if last_weight is not None and len(bn) == 4 \
                    and shapes[bn["bn.mean"]] == (shapes[last_weight][0],):
                blocks[last_weight].update(bn)
            last_weight = None
            continue
        weight = leaves.get("weight")
        if weight is not None and len(shapes[weight]) >= 2:
            roles[weight] = "weight"
            blocks[weight] = {}
            last_weight = weight
            if "bias" in leaves:
                roles[leaves["bias"]] = "bias"
                blocks[weight]["bias"] = leaves["bias"]
        else:
            last_weight = None
    return roles, {w: m for w, m in blocks.items() if m}
