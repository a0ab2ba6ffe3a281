"""The adapter registry: by format name, file extension and topology storage format."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from nnr.bitstream.enums import TopologyStorageFormat as TSF
from nnr.encoder import Topology
from nnr.errors import ConfigError

__all__ = ["AdapterInfo", "ADAPTERS", "get", "names", "for_path", "for_topology", "extensions"]


@dataclass(frozen=True)
class AdapterInfo:
    """One adapter: its module under ``nnr.adapters``, the file suffixes it reads and writes,
    the topology storage format it writes and the extra that installs its framework."""

    name: str
    module: str
    suffixes: tuple[str, ...]
    storage_format: int
    extra: str | None


ADAPTERS: dict[str, AdapterInfo] = {a.name: a for a in (
    AdapterInfo("numpy", "numpy", (".npz",), TSF.UNREC, None),
    AdapterInfo("safetensors", "safetensors", (".safetensors",), TSF.UNREC, None),
    AdapterInfo("torch", "torch", (".pt", ".pth", ".jit"), TSF.PYT, "torch"),
    AdapterInfo("onnx", "onnx", (".onnx",), TSF.ONNX, "onnx"),
    AdapterInfo("tensorflow", "tensorflow", (".h5", ".hdf5", ".keras"), TSF.TEF, "tensorflow"),
    AdapterInfo("nnef", "nnef", (".nnef",), TSF.NNEF, None),
)}
_ALIASES = {"npz": "numpy", "pytorch": "torch", "pt": "torch", "keras": "tensorflow",
            "h5": "tensorflow", "tf": "tensorflow"}


def names() -> list[str]:
    return list(ADAPTERS)


def extensions() -> list[str]:
    return [s for a in ADAPTERS.values() for s in a.suffixes]


def get(name: str) -> ModuleType:
    """The adapter module for a format name (``numpy``, ``torch``, ``onnx`` ...)."""
    key = _ALIASES.get(name.lower(), name.lower())
    info = ADAPTERS.get(key)
    if info is None:
        raise ConfigError(f"unknown model format {name!r} (known: {', '.join(ADAPTERS)})")
    return importlib.import_module(f"nnr.adapters.{info.module}")


def format_of_path(path: str | os.PathLike[str]) -> str | None:
    """The format name a path's suffix (or an NNEF folder) stands for, or None."""
    p = Path(path)
    if p.name == "graph.nnef" or (p.is_dir() and (p / "graph.nnef").is_file()):
        return "nnef"
    lower = p.name.lower()
    if lower.endswith(".nnef.tgz") or lower.endswith(".nnef.tar"):
        return "nnef"
    for info in ADAPTERS.values():
        if any(lower.endswith(s) for s in info.suffixes):
            return info.name
    return None


def for_path(path: str | os.PathLike[str], fmt: str | None = None) -> ModuleType:
    name = fmt or format_of_path(path)
    if name is None:
        raise ConfigError(f"cannot tell the model format of '{path}' from its name "
                          f"(known suffixes: {', '.join(extensions())}); name it with a format")
    return get(name)


def for_topology(topology: Topology | None) -> ModuleType:
    """The adapter that reads a stream with this topology (numpy for plain tensor streams)."""
    from nnr.adapters._common import read_json_topology
    if topology is not None:
        fmt = int(topology.storage_format)
        if fmt == TSF.ONNX:
            return get("onnx")
        if fmt == TSF.NNEF:
            return get("nnef")
        doc = read_json_topology(topology)
        if doc is not None and str(doc.get("format")) in ADAPTERS:
            return get(str(doc["format"]))
    return get("numpy")


def describe(info: Any) -> str:
    return f"{info.name} ({', '.join(info.suffixes)})"
