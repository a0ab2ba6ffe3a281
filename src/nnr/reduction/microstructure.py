"""Micro-structured pruning and unification.

A weight is viewed as 3-D, ``(out, in, rest)`` (a 2-D weight as ``(out, in, 1)``), and cut into
blocks of ``block = (b0, b1, b2)`` (``None``: the whole axis; edge blocks may be smaller).
Each block gets a score, the estimated loss increase of changing it,
``0.5 * sum F_i (w'_i - w_i)^2`` with F the diagonal Fisher information (squared gradients of
the task loss, :func:`fisher_diagonal`) or 1 without data. The lowest-scoring ``ratio`` of
the blocks is then

- **pruned**: set to zero (:func:`micro_prune`), or
- **unified**: every weight keeps its sign and takes the block's shared magnitude, the
  F-weighted mean of the magnitudes (:func:`unify`),

and :func:`fine_tune_structured` trains the model with both constraints held (pruned blocks
stay zero, unified blocks keep one magnitude and their signs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction._common import (FineTune, TaskLoss, as_float_dict, check_ratio,
                                   require_torch, weight_names)

__all__ = ["reshape_3d", "block_ids", "block_scores", "micro_prune", "unify", "UnifyPlan",
           "fisher_diagonal", "fine_tune_structured", "DEFAULT_BLOCK"]

Block = Sequence[int | None]
#: Default block: 2 output x 2 input channels x the whole kernel.
DEFAULT_BLOCK: tuple[int | None, ...] = (2, 2, None)


def reshape_3d(shape: Sequence[int]) -> tuple[int, int, int]:
    """``(out, in, prod(rest))`` of a weight with two or more dimensions."""
    if len(shape) < 2:
        raise ConfigError(f"micro-structured tools need >= 2 dimensions, got {tuple(shape)}")
    rest = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return int(shape[0]), int(shape[1]), rest


def _block_dims(shape3: tuple[int, int, int], block: Block) -> tuple[int, int, int]:
    if len(block) != 3:
        raise ConfigError(f"block must have 3 entries (None = whole axis), got {tuple(block)}")
    dims = tuple(d if b is None else int(b) for b, d in zip(block, shape3))
    if any(b < 1 for b in dims):
        raise ConfigError(f"block sizes must be >= 1, got {tuple(block)}")
    return tuple(min(b, d) if d else b for b, d in zip(dims, shape3))  # type: ignore[return-value]


def block_ids(shape: Sequence[int], block: Block = DEFAULT_BLOCK) -> tuple[np.ndarray, int]:
    """Block index of every element (array of ``shape``) and the number of blocks."""
    s3 = reshape_3d(shape)
    b = _block_dims(s3, block)
    nb = [-(-d // k) for d, k in zip(s3, b)]
    i0 = (np.arange(s3[0]) // b[0])[:, None, None]
    i1 = (np.arange(s3[1]) // b[1])[None, :, None]
    i2 = (np.arange(s3[2]) // b[2])[None, None, :]
    ids = (i0 * nb[1] + i1) * nb[2] + i2
    return ids.reshape(tuple(shape)), int(np.prod(nb))


def _sums(ids: np.ndarray, n: int, values: np.ndarray) -> np.ndarray:
    return np.bincount(ids.ravel(), weights=np.asarray(values, np.float64).ravel(), minlength=n)


def _shared_magnitude(w: np.ndarray, f: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
    num, den = _sums(ids, n, f * np.abs(w)), _sums(ids, n, f)
    return np.divide(num, den, out=np.zeros(n), where=den > 0)


def block_scores(w: np.ndarray, block: Block = DEFAULT_BLOCK, *, mode: str = "prune",
                 fisher: np.ndarray | None = None) -> np.ndarray:
    """Estimated loss increase per block of pruning (``mode="prune"``) or unifying it."""
    if mode not in ("prune", "unify"):
        raise ConfigError(f"mode must be 'prune' or 'unify', got {mode!r}")
    w = np.asarray(w, np.float64)
    f = np.ones_like(w) if fisher is None else np.asarray(fisher, np.float64).reshape(w.shape)
    ids, n = block_ids(w.shape, block)
    if mode == "prune":
        return 0.5 * _sums(ids, n, f * w * w)
    m = _shared_magnitude(w, f, ids, n)
    return 0.5 * _sums(ids, n, f * (np.abs(w) - m[ids]) ** 2)


def _chosen(scores: np.ndarray, ratio: float) -> np.ndarray:
    k = int(round(check_ratio(ratio) * scores.size))
    sel = np.zeros(scores.size, bool)
    sel[np.argsort(scores, kind="stable")[:k]] = True
    return sel


def micro_prune(tensors: Mapping[str, np.ndarray], ratio: float, *,
                block: Block = DEFAULT_BLOCK, names: Iterable[str] | None = None,
                fisher: Mapping[str, np.ndarray] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Zero the ``ratio`` of blocks of each weight with the lowest scores. Returns the tensors
    and the masks (True = kept) for :func:`fine_tune_structured`."""
    out = as_float_dict(tensors)
    masks = {}
    for n in weight_names(out, names):
        ids, _ = block_ids(out[n].shape, block)
        sel = _chosen(block_scores(out[n], block, fisher=(fisher or {}).get(n)), ratio)
        masks[n] = ~sel[ids]
        out[n] = (out[n] * masks[n]).astype(np.float32)
    return out, masks


@dataclass
class UnifyPlan:
    """Per unified tensor: block index of every element, which elements are unified, their
    signs (+1 / -1), and the block layout (for the performance map)."""

    block: tuple[int | None, ...]
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    unified: dict[str, np.ndarray] = field(default_factory=dict)
    signs: dict[str, np.ndarray] = field(default_factory=dict)


def unify(tensors: Mapping[str, np.ndarray], ratio: float, *, block: Block = DEFAULT_BLOCK,
          names: Iterable[str] | None = None,
          fisher: Mapping[str, np.ndarray] | None = None
          ) -> tuple[dict[str, np.ndarray], UnifyPlan]:
    """Unify the ``ratio`` of blocks of each weight that unification hurts least: signs kept,
    magnitudes set to the block's (Fisher-weighted) mean magnitude."""
    out = as_float_dict(tensors)
    plan = UnifyPlan(tuple(block))
    for n in weight_names(out, names):
        w = out[n].astype(np.float64)
        f = np.ones_like(w) if not fisher or n not in fisher else \
            np.asarray(fisher[n], np.float64).reshape(w.shape)
        ids, nb = block_ids(w.shape, block)
        sel = _chosen(block_scores(w, block, mode="unify", fisher=f), ratio)
        m = _shared_magnitude(w, f, ids, nb)
        signs = np.where(w < 0, -1.0, 1.0)
        uni = sel[ids]
        out[n] = np.where(uni, signs * m[ids], w).astype(np.float32)
        plan.ids[n], plan.unified[n], plan.signs[n] = ids, uni, signs.astype(np.float32)
    return out, plan


def fisher_diagonal(tensors: Mapping[str, np.ndarray], loss_fn: TaskLoss,
                    names: Iterable[str] | None = None, batches: int = 8
                    ) -> dict[str, np.ndarray]:
    """Mean squared gradient of ``loss_fn`` over ``batches`` calls (one mini-batch each), per
    element of the weights ``names``: the diagonal of the empirical Fisher information."""
    torch = require_torch("fisher_diagonal")
    names = weight_names(tensors, names)
    params = {n: torch.from_numpy(np.array(a, dtype=np.float32)) if np.asarray(a).dtype.kind
              == "f" else torch.from_numpy(np.asarray(a)) for n, a in tensors.items()}
    for n in names:
        params[n].requires_grad_(True)
    acc = {n: np.zeros(np.shape(tensors[n])) for n in names}
    with torch.enable_grad():
        for _ in range(batches):
            grads = torch.autograd.grad(loss_fn(params), [params[n] for n in names])
            for n, g in zip(names, grads):
                acc[n] += g.detach().numpy().astype(np.float64) ** 2
    return {n: (a / max(batches, 1)).astype(np.float32) for n, a in acc.items()}


def _unify_projection(torch, plan: UnifyPlan):
    prepared = {}
    for n, ids in plan.ids.items():
        uni = plan.unified[n]
        flat = torch.from_numpy(np.ascontiguousarray(ids.ravel()).astype(np.int64))
        count = np.bincount(ids.ravel(), weights=uni.ravel().astype(np.float64),
                            minlength=int(ids.max()) + 1 if ids.size else 0)
        prepared[n] = (flat, torch.from_numpy(uni), torch.from_numpy(plan.signs[n]),
                       torch.from_numpy(np.maximum(count, 1).astype(np.float32)))

    def project(params) -> None:
        for n, (flat, uni, signs, count) in prepared.items():
            w = params[n]
            mag = torch.zeros_like(count).index_add_(0, flat, (w.abs() * uni).reshape(-1))
            shared = (mag / count)[flat].reshape(w.shape)
            w.copy_(torch.where(uni, signs * shared, w))
    return project


def fine_tune_structured(tensors: Mapping[str, np.ndarray], loss_fn: TaskLoss,
                         finetune: FineTune, *, masks: Mapping[str, np.ndarray] | None = None,
                         plan: UnifyPlan | None = None,
                         trainable: Iterable[str] | None = None
                         ) -> tuple[dict[str, np.ndarray], list[float]]:
    """Fine-tune with pruned blocks held at zero (``masks``) and unified blocks holding one
    magnitude and their signs (``plan``), by projection after every step."""
    from nnr.reduction.finetune import fine_tune, masked_projection
    from nnr.reduction.sparsify import default_trainable
    torch = require_torch("fine_tune_structured")
    steps = []
    if masks:
        steps.append(masked_projection(masks))
    if plan is not None and plan.ids:
        steps.append(_unify_projection(torch, plan))

    def project(params) -> None:
        for p in steps:
            p(params)

    names = list(trainable) if trainable is not None else default_trainable(tensors)
    return fine_tune(tensors, loss_fn, names, finetune, project=project,
                     tool="fine_tune_structured")
