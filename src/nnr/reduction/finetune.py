"""The one fine-tuning loop behind every training-based reduction tool (PyTorch, imported
only when a tool fine-tunes).

Constraints are kept by projection: after every optimizer step ``project(params)`` puts the
trainable tensors back onto the allowed set (pruned positions zero, unified blocks sharing one
magnitude, ...). A ``regularizer(params, task_loss)`` term is added to the task loss.
"""
from __future__ import annotations

from typing import Any, Callable, Collection, Mapping

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction._common import FineTune, TaskLoss, require_torch

__all__ = ["fine_tune", "masked_projection"]

Params = dict  # name -> torch.Tensor
Projection = Callable[[Params], None]
Regularizer = Callable[[Params, Any], Any]


def _optimizer(torch, params: list, ft: FineTune):
    if ft.optimizer == "sgd":
        return torch.optim.SGD(params, lr=ft.lr, momentum=ft.momentum)
    return torch.optim.Adam(params, lr=ft.lr)


def fine_tune(tensors: Mapping[str, np.ndarray], loss_fn: TaskLoss, trainable: Collection[str],
              ft: FineTune, *, regularizer: Regularizer | None = None,
              project: Projection | None = None, tool: str = "fine-tuning"
              ) -> tuple[dict[str, np.ndarray], list[float]]:
    """Train the ``trainable`` tensors for ``ft.steps`` steps on ``loss_fn``; the others are
    passed to ``loss_fn`` unchanged. Returns the tensors (float32 numpy) and the task loss
    of every step."""
    torch = require_torch(tool)
    missing = [n for n in trainable if n not in tensors]
    if missing:
        raise ConfigError(f"{tool}: no tensor named {missing[0]!r}")
    params: Params = {}
    for name, arr in tensors.items():
        a = np.asarray(arr)
        t = torch.from_numpy(np.array(a, dtype=np.float32 if a.dtype.kind == "f" else a.dtype))
        if name in trainable:
            t.requires_grad_(True)
        params[name] = t
    opt = _optimizer(torch, [params[n] for n in trainable], ft)
    history: list[float] = []
    with torch.enable_grad():
        if project is not None:
            with torch.no_grad():
                project(params)
        for _ in range(ft.steps):
            opt.zero_grad(set_to_none=True)
            task = loss_fn(params)
            loss = task if regularizer is None else task + regularizer(params, task)
            loss.backward()
            opt.step()
            if project is not None:
                with torch.no_grad():
                    project(params)
            history.append(float(task.detach()))
    out = {n: (params[n].detach().numpy().astype(np.float32) if n in trainable
               else np.asarray(tensors[n])) for n in tensors}
    return out, history


def masked_projection(masks: Mapping[str, np.ndarray]) -> Projection:
    """A projection that keeps the zeros of ``masks`` (``{name: bool array}``, True = kept)."""
    torch = require_torch("masked fine-tuning")
    tm = {n: torch.from_numpy(np.asarray(m, dtype=bool)) for n, m in masks.items()}

    def project(params: Params) -> None:
        for n, m in tm.items():
            params[n].mul_(m)
    return project
