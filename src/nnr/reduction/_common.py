"""Shared pieces of the parameter-reduction tools: tensor selection, the optional PyTorch
import, and the fine-tuning settings every training-based tool takes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping

import numpy as np

from nnr.errors import ConfigError, UnsupportedFeatureError

if TYPE_CHECKING:
    import torch

__all__ = ["FineTune", "TaskLoss", "weight_names", "as_float_dict", "require_torch"]

#: ``loss_fn(tensors) -> scalar``: the task loss of the model whose parameters are ``tensors``
#: (``{name: torch.Tensor}``, every tensor of the model) on the next training mini-batch.
#: The tools call it once per fine-tuning step; drawing the batch is up to the caller.
TaskLoss = Callable[[Mapping[str, "torch.Tensor"]], "torch.Tensor"]


@dataclass(frozen=True)
class FineTune:
    """How a tool fine-tunes: ``steps`` optimizer steps with ``lr`` (``optimizer`` "adam" or
    "sgd" with ``momentum``)."""

    steps: int = 200
    lr: float = 1e-4
    optimizer: str = "adam"
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


def require_torch(tool: str) -> Any:
    """Import torch for ``tool`` or raise :class:`UnsupportedFeatureError` saying why."""
    try:
        import torch
    except ImportError as exc:
        raise UnsupportedFeatureError(
            f"{tool} fine-tunes with PyTorch, which is not installed (pip install torch)") from exc
    return torch


def as_float_dict(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A shallow copy of ``tensors`` with every value as a numpy array (floats as float32)."""
    out = {}
    for name, value in tensors.items():
        arr = np.asarray(value)
        out[name] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    return out


def weight_names(tensors: Mapping[str, np.ndarray], names: Iterable[str] | None = None,
                 min_ndim: int = 2) -> list[str]:
    """The float tensors with ``min_ndim`` or more dimensions (the "weights"), or ``names``
    after checking that each exists and is a float tensor."""
    if names is None:
        return [n for n, a in tensors.items()
                if np.asarray(a).dtype.kind == "f" and np.ndim(a) >= min_ndim and np.size(a)]
    out = list(names)
    for n in out:
        if n not in tensors:
            raise ConfigError(f"no tensor named {n!r}")
        if np.asarray(tensors[n]).dtype.kind != "f":
            raise ConfigError(f"tensor {n!r} is not a float tensor")
    return out


def check_ratio(ratio: float, what: str = "ratio") -> float:
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"{what} must be in [0, 1], got {ratio}")
    return float(ratio)


def per_name(value: float | Mapping[str, float], name: str, default: float = 0.0) -> float:
    """``value`` for ``name``: the value itself, or its entry in a per-tensor mapping."""
    if isinstance(value, Mapping):
        return float(value.get(name, default))
    return float(value)


def count_nonzero(tensors: Mapping[str, np.ndarray], names: Collection[str]) -> tuple[int, int]:
    """(nonzero count, total count) over ``names``."""
    nz = sum(int(np.count_nonzero(tensors[n])) for n in names)
    return nz, sum(int(np.size(tensors[n])) for n in names)
