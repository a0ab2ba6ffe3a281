"""Sparsification: set weights to zero so that DeepCABAC codes them for almost nothing.

- :func:`magnitude_sparsify` (no data): zero the smallest-magnitude weights, per tensor or
  with one threshold in units of each tensor's RMS over all weights;
- :func:`sparsify` (with a task loss): fine-tune with the compressibility loss
  ``L_c = sum_w ||w||_1 / ||w||_2`` added to the task loss L, weighted every step so that the
  added term equals ``multiple * L`` (the NNR overview's weighting), then threshold to the
  requested sparsity, then optionally fine-tune again with the zeros held (masked).

The sparsity is signalled only through the performance map (:mod:`nnr.reduction.perfmaps`);
the zeros themselves are ordinary weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction._common import (FineTune, TaskLoss, as_float_dict, check_ratio,
                                   count_nonzero, per_name, weight_names)

__all__ = ["magnitude_sparsify", "sparsity", "compressibility_loss", "sparsify",
           "SparsifyPlan", "SparsifyReport", "default_trainable"]


def sparsity(tensors: Mapping[str, np.ndarray], names: Iterable[str] | None = None) -> float:
    """Fraction of zeros among ``names`` (default: the weights, two or more dimensions)."""
    nz, total = count_nonzero(tensors, weight_names(tensors, names))
    return 1.0 - nz / total if total else 0.0


def _normalised(a: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if a.size else 0.0
    return np.abs(a) / rms if rms > 0 else np.abs(a)


def magnitude_sparsify(tensors: Mapping[str, np.ndarray],
                       ratio: float | Mapping[str, float] | None = None, *,
                       threshold: float | None = None, names: Iterable[str] | None = None,
                       scope: str = "tensor") -> dict[str, np.ndarray]:
    """Zero small weights of ``names`` (default: every float tensor with >= 2 dimensions).

    ``ratio``: the fraction of zeros each tensor ends with (``scope="tensor"``; a mapping gives
    one per tensor) or all of them together (``scope="global"``, ranked by |w| / RMS of the
    tensor). ``threshold``: instead, zero every ``|w| < threshold * RMS(w)``. Existing zeros
    count toward the ratio."""
    if (ratio is None) == (threshold is None):
        raise ConfigError("give exactly one of ratio and threshold")
    if scope not in ("tensor", "global"):
        raise ConfigError(f"scope must be 'tensor' or 'global', got {scope!r}")
    out = as_float_dict(tensors)
    names = weight_names(out, names)
    if threshold is not None:
        for n in names:
            out[n] = np.where(_normalised(out[n]) < threshold, 0, out[n]).astype(np.float32)
        return out
    if scope == "global":
        if isinstance(ratio, Mapping):
            raise ConfigError("a per-tensor ratio mapping needs scope='tensor'")
        t = _global_threshold({n: _normalised(out[n]) for n in names}, check_ratio(ratio))
        return magnitude_sparsify(out, threshold=t, names=names) if t is not None else out
    for n in names:
        out[n] = _zero_smallest(out[n], check_ratio(per_name(ratio, n)))
    return out


def _global_threshold(mags: Mapping[str, np.ndarray], ratio: float) -> float | None:
    """The normalised magnitude below which ``ratio`` of all values lie (None: zero nothing)."""
    allv = np.concatenate([m.ravel() for m in mags.values()]) if mags else np.zeros(0)
    k = int(round(ratio * allv.size))
    if k <= 0:
        return None
    if k >= allv.size:
        return float("inf")
    return float(np.partition(allv, k)[k])


def _zero_smallest(a: np.ndarray, ratio: float) -> np.ndarray:
    k = int(round(ratio * a.size))
    if k <= 0:
        return a
    flat = a.ravel().copy()
    idx = np.argpartition(np.abs(flat), min(k, flat.size) - 1)[:k]
    flat[idx] = 0
    return flat.reshape(a.shape)


def compressibility_loss(params: Mapping[str, object], names: Iterable[str]):
    """``sum ||w||_1 / ||w||_2`` over ``names`` (torch tensors): small when the weights are
    concentrated in few large values, i.e. sparse and cheap to code."""
    total = None
    for n in names:
        w = params[n]
        term = w.abs().sum() / (w.pow(2).sum().sqrt() + 1e-12)
        total = term if total is None else total + term
    if total is None:
        raise ConfigError("compressibility_loss needs at least one tensor")
    return total


def default_trainable(tensors: Mapping[str, np.ndarray]) -> list[str]:
    """Every float tensor except batch-norm running statistics (PyTorch naming)."""
    return [n for n, a in tensors.items() if np.asarray(a).dtype.kind == "f"
            and not n.endswith(("running_mean", "running_var"))]


@dataclass(frozen=True)
class SparsifyPlan:
    """What :func:`sparsify` does: fine-tune with the compressibility loss weighted to
    ``multiple`` times the task loss (``finetune``), keep the largest weights so that ``ratio``
    of them are zero (per tensor or ``scope="global"``), then fine-tune ``recover`` steps with
    the zeros held."""

    ratio: float
    multiple: float = 0.1
    scope: str = "tensor"
    finetune: FineTune = FineTune()
    recover: FineTune = FineTune(steps=0)

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        if not self.multiple >= 0:
            raise ConfigError(f"multiple must be >= 0, got {self.multiple}")


@dataclass
class SparsifyReport:
    """What :func:`sparsify` did: task loss per fine-tuning step, sparsity after each stage."""

    loss: list[float] = field(default_factory=list)
    recover_loss: list[float] = field(default_factory=list)
    sparsity_after_training: float = 0.0
    sparsity: float = 0.0


def sparsify(tensors: Mapping[str, np.ndarray], loss_fn: TaskLoss, plan: SparsifyPlan, *,
             names: Iterable[str] | None = None, trainable: Iterable[str] | None = None
             ) -> tuple[dict[str, np.ndarray], SparsifyReport]:
    """Compressibility-loss fine-tuning of ``trainable`` (default: every float tensor but
    batch-norm statistics), thresholding of the weights ``names`` (default: two or more
    dimensions), then masked recovery fine-tuning (see :class:`SparsifyPlan`)."""
    from nnr.reduction.finetune import fine_tune, masked_projection
    names = weight_names(tensors, names)
    trainable = list(trainable) if trainable is not None else default_trainable(tensors)

    def reg(params, task):
        lc = compressibility_loss(params, names)
        return plan.multiple * task.detach() * lc / lc.detach()

    report = SparsifyReport()
    tuned, report.loss = fine_tune(tensors, loss_fn, trainable, plan.finetune, regularizer=reg,
                                   tool="sparsify")
    report.sparsity_after_training = sparsity(tuned, names)
    out = magnitude_sparsify(tuned, plan.ratio, names=names, scope=plan.scope)
    if plan.recover.steps:
        masks = {n: out[n] != 0 for n in names}
        out, report.recover_loss = fine_tune(out, loss_fn, trainable, plan.recover,
                                             project=masked_projection(masks), tool="sparsify")
    report.sparsity = sparsity(out, names)
    return out, report
