"""PyTorch: state dicts in ``.pt``/``.pth`` files (read with ``weights_only=True``),
``nn.Module`` objects, and TorchScript archives (``torch.jit.save``; ``.pt``/``.jit``).

float32/float16/bfloat16/float64 tensors are coded as float32 and restored to their dtype;
integer and bool tensors (``num_batches_tracked``) are coded losslessly as integers. The
topology (storage format 3, PYT) is JSON: the tensors' names, dtypes, shapes and roles in
state-dict order, the nesting of a checkpoint dict and its non-tensor values (``epoch`` ...),
and for TorchScript the archive with its parameters and buffers emptied, so a decoded stream
becomes a runnable TorchScript module again.
"""
from __future__ import annotations

import base64
import io
import os
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Mapping

import numpy as np

from nnr.adapters._common import (json_topology, model_from_entries, read_json_topology,
                                  require, roles_from_names, tensor_entries)
from nnr.bitstream.enums import TopologyStorageFormat
from nnr.codec import DecodedStream
from nnr.encoder import Topology
from nnr.errors import ConfigError
from nnr.model import Model

__all__ = ["load", "save", "to_tensors", "from_tensors", "topology_for", "from_stream",
           "tensor_to_numpy", "numpy_to_tensor"]

NAME = "torch"
_SEP = "/"


def _torch() -> Any:
    return require("torch", "torch", "PyTorch")


def tensor_to_numpy(t: Any) -> tuple[np.ndarray, str]:
    """A torch tensor as (numpy array, original dtype name); bfloat16 and other float types
    numpy lacks come back as float32."""
    torch = _torch()
    t = t.detach().cpu()
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_floating_point() and dtype not in ("float16", "float32", "float64"):
        return t.to(torch.float32).numpy(), dtype
    return t.numpy(), dtype


def numpy_to_tensor(array: np.ndarray, dtype: str) -> Any:
    torch = _torch()
    target = getattr(torch, dtype, None)
    if not isinstance(target, torch.dtype):
        raise ConfigError(f"torch has no dtype {dtype!r}")
    return torch.from_numpy(np.array(array, order="C", copy=True)).to(target)


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _json_value(path: list[str], value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(path, v) for v in value]
    raise ConfigError(f"'{'/'.join(path)}' is a {type(value).__name__}: only tensors, "
                      "nested dicts and plain values (numbers, strings, lists) are supported")


def _flatten(obj: Mapping[str, Any], model: Model, extras: list, path: list[str]) -> None:
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ConfigError(f"state dict keys must be strings, got {key!r}")
        p = path + [key]
        if _is_tensor(value):
            name = _SEP.join(p) if path else key
            model.tensors[name], model.dtypes[name] = tensor_to_numpy(value)
            if path:
                model.metadata.setdefault("paths", {})[name] = p
        elif isinstance(value, Mapping):
            _flatten(value, model, extras, p)
        else:
            extras.append({"path": p, "value": _json_value(p, value)})


def to_tensors(obj: Any) -> Model:
    """A Model of a state dict (``{name: tensor}``, possibly nested in a checkpoint dict) or
    of an ``nn.Module`` (its ``state_dict()``)."""
    torch = _torch()
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ConfigError(f"expected a state dict or an nn.Module, got {type(obj).__name__}")
    model = Model(format=NAME)
    extras: list = []
    _flatten(obj, model, extras, [])
    if extras:
        model.metadata["extras"] = extras
    model.roles, model.blocks = roles_from_names({n: a.shape for n, a in model.tensors.items()})
    return model


def _is_torchscript(path: str | os.PathLike[str]) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _script_model(path: str | os.PathLike[str]) -> Model:
    """The parameters and buffers of a TorchScript module; the topology keeps the archive
    without them."""
    torch = _torch()
    module = torch.jit.load(str(path), map_location="cpu")
    model = to_tensors(module)
    for _, t in list(module.named_parameters()) + list(module.named_buffers()):
        t.data = torch.empty(0, dtype=t.dtype)
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    model.metadata["torchscript"] = base64.b64encode(buf.getvalue()).decode("ascii")
    return model


def load(path: str | os.PathLike[str], **_: Any) -> Model:
    """Read a state dict (``torch.load(..., weights_only=True)``) or a TorchScript archive."""
    torch = _torch()
    if _is_torchscript(path):
        return _script_model(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # torch raises many kinds (UnpicklingError, RuntimeError ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot read '{path}' as a PyTorch state dict "
                          f"(weights_only=True): {reason}") from None
    return to_tensors(obj)


def _nested(model: Model) -> "OrderedDict[str, Any]":
    out: OrderedDict[str, Any] = OrderedDict()
    paths = model.metadata.get("paths") or {}

    def put(path: list[str], value: Any) -> None:
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, OrderedDict())
        node[path[-1]] = value
    for name, array in model.tensors.items():
        put(list(paths.get(name, [name])), numpy_to_tensor(array, model.dtype(name)))
    for extra in model.metadata.get("extras") or []:
        put(list(extra["path"]), extra["value"])
    return out


def from_tensors(model: Model, module_class: Callable[..., Any] | None = None, *,
                 module: Any = None, strict: bool = True, **kwargs: Any) -> Any:
    """The state dict (nested as it was) of ``model``; with ``module_class`` (called with
    ``kwargs``) or ``module``, that module with the state dict loaded. A TorchScript model
    comes back as its TorchScript module."""
    if module is None and module_class is None and model.metadata.get("torchscript"):
        return _load_script(model)
    if module is None and module_class is not None:
        module = module_class(**kwargs)
    state = _nested(model)
    if module is None:
        return state
    module.load_state_dict(state, strict=strict)
    return module


def _load_script(model: Model) -> Any:
    torch = _torch()
    module = torch.jit.load(io.BytesIO(base64.b64decode(model.metadata["torchscript"])),
                            map_location="cpu")
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if name not in model.tensors:
            raise ConfigError(f"TorchScript tensor {name!r} is missing from the stream")
        t.data = numpy_to_tensor(model.tensors[name], model.dtype(name))
    return module


def save(model: Model, path: str | os.PathLike[str] | io.IOBase, **_: Any) -> None:
    """``torch.save`` of the state dict, or ``torch.jit.save`` of a TorchScript model."""
    torch = _torch()
    if model.format == NAME and model.metadata.get("torchscript"):
        torch.jit.save(_load_script(model), path if hasattr(path, "write") else str(path))
        return
    torch.save(_nested(model), path if hasattr(path, "write") else str(path))


def topology_for(model: Model, inline: list[str]) -> Topology:
    doc: dict[str, Any] = {"format": NAME, "tensors": tensor_entries(model, inline)}
    for key in ("paths", "extras", "torchscript"):
        if model.metadata.get(key):
            doc[key] = model.metadata[key]
    return json_topology(TopologyStorageFormat.PYT, doc)


def from_stream(decoded: DecodedStream) -> Model:
    doc = read_json_topology(decoded.topology) or {}
    if not isinstance(doc.get("tensors"), list):
        model = Model(tensors=dict(decoded.tensors), format=NAME)
    else:
        model = model_from_entries(doc["tensors"], decoded.tensors, NAME)
    for key in ("paths", "extras", "torchscript"):
        if doc.get(key) and doc.get("format") == NAME:
            model.metadata[key] = doc[key]
    model.topology = decoded.topology
    model.roles, model.blocks = roles_from_names({n: a.shape for n, a in model.tensors.items()})
    return model
