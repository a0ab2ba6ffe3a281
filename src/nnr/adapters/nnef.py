"""NNEF models (Khronos Neural Network Exchange Format): a folder with ``graph.nnef`` and one
binary ``.dat`` file per variable, or a ``.tgz`` of such a folder.

nnr reads and writes the layout itself (no package needed): the graph's ``variable``
statements name the tensors (their ``label``, which is also the ``.dat`` path), and the
``.dat`` files use NNEF's binary tensor format (a 128-byte header: magic ``4E EF``, version,
data length, rank, 8 dimensions, bits per item, item type, quantization parameters). The
topology (storage format 1) is the graph text; when a tensor file is not plain float32, or the
model has a ``graph.quant`` file, one trailing NNEF comment line ``# nnr: {...}`` records it.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from nnr.adapters._common import pack_topology, restore_dtype, unpack_topology
from nnr.bitstream.enums import TopologyStorageFormat
from nnr.codec import DecodedStream
from nnr.encoder import Topology
from nnr.errors import ConfigError, NonConformingBitstreamError
from nnr.model import Model

__all__ = ["load", "save", "to_tensors", "from_tensors", "topology_for", "from_stream",
           "read_tensor", "write_tensor", "variables"]

NAME = "nnef"
HEADER_SIZE = 128
MAX_RANK = 8
_MAGIC = b"\x4e\xef"
_FLOAT, _UINT, _QUINT, _QINT, _INT, _BOOL = range(6)
_NUMPY = {(_FLOAT, 16): "float16", (_FLOAT, 32): "float32", (_FLOAT, 64): "float64",
          (_INT, 8): "int8", (_INT, 16): "int16", (_INT, 32): "int32", (_INT, 64): "int64",
          (_UINT, 8): "uint8", (_UINT, 16): "uint16", (_UINT, 32): "uint32",
          (_UINT, 64): "uint64", (_QINT, 8): "int8", (_QINT, 16): "int16",
          (_QINT, 32): "int32", (_QINT, 64): "int64", (_QUINT, 8): "uint8",
          (_QUINT, 16): "uint16", (_QUINT, 32): "uint32", (_QUINT, 64): "uint64",
          (_BOOL, 1): "bool"}
_ITEM = {"f": _FLOAT, "i": _INT, "u": _UINT, "b": _BOOL}
_PLAIN = {"item_type": _FLOAT, "bits": 32}
_VARIABLE = re.compile(r"(?P<out>[A-Za-z_]\w*)\s*=\s*variable\s*(?:<\s*\w+\s*>)?\s*"
                       r"\((?P<args>[^;]*)\)\s*;")
_LABEL = re.compile(r"label\s*=\s*(['\"])(?P<label>.*?)\1")
_SHAPE = re.compile(r"shape\s*=\s*\[(?P<dims>[^\]]*)\]")
_CALL = re.compile(r"=\s*(?P<op>conv|deconv|linear|batch_normalization)\s*(?:<[^>]*>)?\s*"
                   r"\((?P<args>[^;]*)\)\s*;")
_COMMENT = "# nnr: "


# ------------------------------------------------------------------------- binary tensors

def read_tensor(data: bytes, name: str = "tensor") -> tuple[np.ndarray, dict[str, Any]]:
    """The array of an NNEF ``.dat`` file and its header fields (item type, bits, the
    quantization bytes)."""
    if len(data) < HEADER_SIZE or data[:2] != _MAGIC:
        raise ConfigError(f"{name}: not an NNEF tensor file (bad magic or too short)")
    major, minor = data[2], data[3]
    length, rank = struct.unpack_from("<II", data, 4)
    dims = struct.unpack_from("<8I", data, 12)
    bits, item_type = struct.unpack_from("<II", data, 44)
    if major != 1 or rank > MAX_RANK or (item_type, bits) not in _NUMPY:
        raise ConfigError(f"{name}: unsupported NNEF tensor file (version {major}.{minor}, "
                          f"rank {rank}, item type {item_type}, {bits} bits)")
    shape = tuple(int(d) for d in dims[:rank])
    count = int(np.prod(shape, dtype=np.int64))
    need = (count + 7) // 8 if bits == 1 else count * (bits // 8)
    if length != need or len(data) != HEADER_SIZE + length:
        raise ConfigError(f"{name}: data length {length} / file size {len(data)} do not match "
                          f"the shape {list(shape)}")
    body = data[HEADER_SIZE:]
    if bits == 1:
        array = np.unpackbits(np.frombuffer(body, np.uint8))[:count].astype(bool)
    else:
        array = np.frombuffer(body, np.dtype(_NUMPY[(item_type, bits)]).newbyteorder("<"))
    header = {"item_type": item_type, "bits": bits}
    if data[2:4] != b"\x01\x00":
        header["version"] = [major, minor]
    if any(data[52:HEADER_SIZE]):
        header["quant"] = base64.b64encode(data[52:HEADER_SIZE]).decode("ascii")
    return array.reshape(shape).astype(array.dtype.newbyteorder("="), copy=True), header


def write_tensor(array: np.ndarray, header: dict[str, Any] | None = None) -> bytes:
    """An NNEF ``.dat`` file of ``array`` (float32 unless ``header`` says otherwise)."""
    a = np.asarray(array)
    if header is None:
        header = {"item_type": _ITEM.get(a.dtype.kind, _FLOAT),
                  "bits": 1 if a.dtype.kind == "b" else a.dtype.itemsize * 8}
    item_type, bits = int(header["item_type"]), int(header["bits"])
    dtype = _NUMPY.get((item_type, bits))
    if dtype is None or a.ndim > MAX_RANK:
        raise ConfigError(f"cannot write an NNEF tensor of item type {item_type}, {bits} bits, "
                          f"rank {a.ndim}")
    a = restore_dtype(a, dtype)
    body = np.packbits(a.ravel()).tobytes() if bits == 1 else \
        np.ascontiguousarray(a, np.dtype(dtype).newbyteorder("<")).tobytes()
    version = bytes(header.get("version", [1, 0]))
    dims = list(a.shape) + [0] * (MAX_RANK - a.ndim)
    head = _MAGIC + version + struct.pack("<II8III", len(body), a.ndim, *dims, bits, item_type)
    quant = base64.b64decode(header["quant"]) if header.get("quant") else b""
    head += quant.ljust(HEADER_SIZE - len(head), b"\0")
    return head + body


# ---------------------------------------------------------------------------------- graphs

def variables(graph: str) -> list[tuple[str, str, list[int] | None]]:
    """``(identifier, label, shape)`` of every ``variable`` statement, in graph order."""
    out = []
    for m in _VARIABLE.finditer(_strip_comments(graph)):
        label = _LABEL.search(m["args"])
        if label is None:
            raise ConfigError(f"NNEF variable {m['out']!r} has no label")
        shape = _SHAPE.search(m["args"])
        dims = [int(d) for d in shape["dims"].split(",") if d.strip()] if shape else None
        out.append((m["out"], label["label"], dims))
    return out


def _strip_comments(graph: str) -> str:
    return re.sub(r"#[^\n]*", "", graph)


def _roles(graph: str, labels: dict[str, str]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for m in _CALL.finditer(_strip_comments(graph)):
        args = [a.strip() for a in m["args"].split(",")]
        names = ("weight", "bias") if m["op"] != "batch_normalization" else \
            ("bn.mean", "bn.var", "bn.beta", "bn.gamma")
        for role, arg in zip(names, args[1:]):
            if arg in labels:
                roles[labels[arg]] = role
    return roles


def _split_topology(text: str) -> tuple[str, dict[str, Any]]:
    head, sep, tail = text.rpartition("\n" + _COMMENT)
    if not sep:
        return text, {}
    try:
        return head + "\n", json.loads(tail.strip())
    except ValueError:
        return text, {}


# --------------------------------------------------------------------------------- reading

def _read_files(path: Path) -> dict[str, bytes]:
    """Relative path -> bytes of an NNEF folder, a graph.nnef file's folder or a .tgz."""
    if path.is_file() and path.name != "graph.nnef":
        try:
            with tarfile.open(path, "r:*") as tar:
                return {Path(m.name).as_posix().lstrip("./"): tar.extractfile(m).read()
                        for m in tar.getmembers() if m.isfile()}
        except tarfile.TarError as exc:
            raise ConfigError(f"cannot read '{path}' as an NNEF archive: {exc}") from None
    folder = path.parent if path.name == "graph.nnef" else path
    if not (folder / "graph.nnef").is_file():
        raise ConfigError(f"'{path}' holds no graph.nnef")
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()}


def to_tensors(files: dict[str, bytes]) -> Model:
    """A Model of an NNEF model's files (relative path -> bytes)."""
    graph = files.get("graph.nnef")
    if graph is None:
        raise ConfigError("the NNEF model has no graph.nnef")
    text = graph.decode("utf-8")
    model = Model(format=NAME)
    headers, labels = {}, {}
    for ident, label, shape in variables(text):
        rel = label.lstrip("/") + ".dat"
        if rel not in files:
            raise ConfigError(f"NNEF variable file {rel} is missing")
        array, header = read_tensor(files[rel], rel)
        if shape is not None and list(array.shape) != shape:
            raise ConfigError(f"{rel}: shape {list(array.shape)}, the graph says {shape}")
        model.tensors[label] = array
        labels[ident] = label
        if header != _PLAIN:
            headers[label] = header
    model.metadata.update({"graph": text, "headers": headers})
    if "graph.quant" in files:
        model.metadata["quant"] = files["graph.quant"].decode("utf-8")
    model.roles = _roles(text, labels)
    return model


def load(path: str | os.PathLike[str], **_: Any) -> Model:
    return to_tensors(_read_files(Path(path)))


# --------------------------------------------------------------------------------- writing

def from_tensors(model: Model) -> dict[str, bytes]:
    """The files of the NNEF model (relative path -> bytes)."""
    graph = model.metadata.get("graph")
    if graph is None:
        raise ConfigError("this model has no NNEF graph (it was not coded from an NNEF model); "
                          "decode it to a tensor format instead")
    files = {"graph.nnef": graph.encode("utf-8")}
    if model.metadata.get("quant"):
        files["graph.quant"] = model.metadata["quant"].encode("utf-8")
    headers = model.metadata.get("headers") or {}
    for _, label, _ in variables(graph):
        if label not in model.tensors:
            raise ConfigError(f"NNEF variable {label!r} has no tensor")
        files[label.lstrip("/") + ".dat"] = write_tensor(model.tensors[label],
                                                         headers.get(label, _PLAIN))
    return files


def save(model: Model, path: str | os.PathLike[str], **_: Any) -> None:
    """Write a folder (created; it must not exist or be empty), or a ``.tgz`` archive."""
    files = from_tensors(model)
    p = Path(path)
    if p.name.endswith((".tgz", ".tar.gz", ".tar")):
        with tarfile.open(p, "w:gz" if not p.name.endswith(".tar") else "w") as tar:
            for rel, data in files.items():
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return
    p.mkdir(parents=False, exist_ok=True)
    if any(p.iterdir()):
        raise ConfigError(f"'{p}' is not empty")
    for rel, data in files.items():
        target = p / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def topology_for(model: Model, inline: list[str]) -> Topology:
    if inline:
        raise ConfigError(f"NNEF tensors nnr cannot code: {inline[:3]}")
    graph = model.metadata.get("graph")
    if graph is None:
        raise ConfigError("this model has no NNEF graph")
    extra = {k: model.metadata[k] for k in ("headers", "quant") if model.metadata.get(k)}
    text = graph if not extra else \
        graph.rstrip("\n") + "\n" + _COMMENT + json.dumps(extra, separators=(",", ":")) + "\n"
    return pack_topology(TopologyStorageFormat.NNEF, text.encode("utf-8"))


def from_stream(decoded: DecodedStream) -> Model:
    if decoded.topology is None or decoded.topology.storage_format != TopologyStorageFormat.NNEF:
        raise ConfigError("the stream carries no NNEF graph")
    try:
        text = unpack_topology(decoded.topology).rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        raise NonConformingBitstreamError("the NNEF topology is not UTF-8 text") from None
    graph, extra = _split_topology(text)
    model = Model(format=NAME, topology=decoded.topology,
                  metadata={"graph": graph, "headers": extra.get("headers") or {}})
    if extra.get("quant"):
        model.metadata["quant"] = extra["quant"]
    labels = {}
    for ident, label, shape in variables(graph):
        if label not in decoded.tensors:
            raise NonConformingBitstreamError(f"NNEF variable {label!r} has no NDU")
        header = model.metadata["headers"].get(label, _PLAIN)
        array = restore_dtype(decoded.tensors[label],
                              _NUMPY[(int(header["item_type"]), int(header["bits"]))])
        model.tensors[label] = array.reshape(shape) if shape is not None else array
        labels[ident] = label
    model.roles = _roles(graph, labels)
    return model
