"""Structured pruning: remove whole output channels and shrink the layers that read them,
giving a smaller dense model (Algorithm 1 of the NNR overview paper: importance by diffusion,
removal, then sparsification).

Channel importance by diffusion: the output channels of a layer are the states of a Markov
chain that moves from channel i to channel j with probability proportional to their
similarity ``A_ij = |<f_i, f_j>|``, where f_i is channel i's output on data (``features``) or,
without data, its filter (rows of the weight, scaled by a following batch norm's
``|gamma| / sqrt(var + eps)``). The stationary distribution pi of the chain measures how much
of the layer's activity flows through a channel; the importance is
``S = exp(-1 / (sigma * pi))`` with sigma the channel count (so that sigma * pi is 1 for
uniform pi), which puts channels of different layers on one scale for a global ranking.
A dead channel (pi = 0) has S = 0 and goes first.

Which tensors shrink with a channel is described by :class:`ChannelGroup`; e.g. for
``conv1 -> bn1 -> conv2`` the group of conv1's channels holds conv1 (axis 0), bn1's four
tensors (axis 0) and conv2 (axis 1); a flatten before a linear layer reads each channel
``repeat`` times (the spatial size).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction._common import FineTune, TaskLoss, as_float_dict, check_ratio
from nnr.reduction.batchnorm import BatchNorm

__all__ = ["Slice", "ChannelGroup", "stationary_distribution", "channel_importance",
           "group_importance", "prune_channels", "prune", "PrunePlan", "PruneReport"]


@dataclass(frozen=True)
class Slice:
    """Along ``axis`` of tensor ``name``, channel c occupies ``repeat`` consecutive indices
    starting at ``c * repeat``."""

    name: str
    axis: int = 0
    repeat: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    """The output channels of ``producer`` (its axis 0) and every other slice that has one
    entry per channel (biases, batch norm, the next layer's input axis, a depthwise conv).
    ``bn``: the batch norm after the producer, used to weigh the filters."""

    producer: str
    members: tuple[Slice, ...] = ()
    bn: BatchNorm | None = None

    def slices(self) -> tuple[Slice, ...]:
        return (Slice(self.producer, 0, 1),) + tuple(self.members)


def stationary_distribution(affinity: np.ndarray, iterations: int = 1000,
                            tol: float = 1e-12) -> np.ndarray:
    """Stationary distribution of the chain with transitions ``A_ij / sum_j A_ij`` (power
    iteration; a state with no affinity at all keeps probability 0)."""
    a = np.asarray(affinity, np.float64)
    deg = a.sum(axis=1)
    live = deg > 0
    if not live.any():
        return np.zeros(a.shape[0])
    p = np.zeros_like(a)
    p[live] = a[live] / deg[live, None]
    pi = live / live.sum()
    for _ in range(iterations):
        nxt = pi @ p
        nxt /= nxt.sum()
        if np.abs(nxt - pi).sum() < tol:
            pi = nxt
            break
        pi = nxt
    return pi


def channel_importance(rows: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """``S = exp(-1 / (sigma * pi))`` for the channels whose vectors are the rows of ``rows``
    (filters, or output features over samples); sigma defaults to the channel count."""
    f = np.asarray(rows, np.float64).reshape(rows.shape[0], -1)
    pi = stationary_distribution(np.abs(f @ f.T))
    sigma = float(rows.shape[0]) if sigma is None else float(sigma)
    with np.errstate(divide="ignore", over="ignore"):
        s = np.exp(-1.0 / (sigma * pi))
    return np.where(pi > 0, s, 0.0)


def _filters(tensors: Mapping[str, np.ndarray], g: ChannelGroup) -> np.ndarray:
    w = np.asarray(tensors[g.producer], np.float64)
    w = w.reshape(w.shape[0], -1)
    if g.bn is not None:
        scale = np.abs(tensors[g.bn.gamma]) / np.sqrt(np.asarray(tensors[g.bn.var]) + g.bn.eps)
        w = w * scale[:, None]
    return w


def group_importance(tensors: Mapping[str, np.ndarray], groups: Iterable[ChannelGroup], *,
                     criterion: str = "diffusion",
                     features: Mapping[str, np.ndarray] | None = None
                     ) -> dict[str, np.ndarray]:
    """Importance per channel of every group (keyed by producer). ``criterion``: "diffusion"
    (S above) or "l1" (the L1 norm of the weighted filter, for comparison). ``features``:
    ``{producer: array (channels, ...)}`` of outputs on data, used instead of the filters."""
    if criterion not in ("diffusion", "l1"):
        raise ConfigError(f"criterion must be 'diffusion' or 'l1', got {criterion!r}")
    out = {}
    for g in groups:
        f = features.get(g.producer) if features else None
        rows = np.asarray(f, np.float64).reshape(f.shape[0], -1) if f is not None \
            else _filters(tensors, g)
        out[g.producer] = channel_importance(rows) if criterion == "diffusion" \
            else np.abs(rows).sum(axis=1)
    return out


def _check_groups(tensors: Mapping[str, np.ndarray], groups: list[ChannelGroup]) -> None:
    seen: set[tuple[str, int]] = set()
    for g in groups:
        if g.producer not in tensors:
            raise ConfigError(f"channel group: no tensor named {g.producer!r}")
        c = np.shape(tensors[g.producer])[0]
        for s in g.slices():
            if s.name not in tensors:
                raise ConfigError(f"channel group of {g.producer!r}: no tensor {s.name!r}")
            shape = np.shape(tensors[s.name])
            if not 0 <= s.axis < len(shape) or s.repeat < 1 or shape[s.axis] != c * s.repeat:
                raise ConfigError(f"channel group of {g.producer!r}: axis {s.axis} of "
                                  f"{s.name!r} {shape} is not {c} channels x {s.repeat}")
            if (s.name, s.axis) in seen:
                raise ConfigError(f"axis {s.axis} of {s.name!r} is in two channel groups")
            seen.add((s.name, s.axis))


def _keep_sets(scores: Mapping[str, np.ndarray], ratio: float | Mapping[str, float],
               scope: str, min_keep: int) -> dict[str, np.ndarray]:
    keep = {}
    if scope == "global":
        if isinstance(ratio, Mapping):
            raise ConfigError("a per-group ratio mapping needs scope='group'")
        allv = np.sort(np.concatenate([s for s in scores.values()]))
        k = int(round(check_ratio(ratio) * allv.size))
        cut = allv[k - 1] if k > 0 else -np.inf
        for p, s in scores.items():
            order = np.argsort(-s, kind="stable")
            n = max(min_keep, int((s > cut).sum()))
            keep[p] = np.sort(order[:min(n, s.size)])
        return keep
    for p, s in scores.items():
        r = check_ratio(ratio.get(p, 0.0) if isinstance(ratio, Mapping) else ratio)
        n = max(min_keep, s.size - int(round(r * s.size)))
        keep[p] = np.sort(np.argsort(-s, kind="stable")[:min(n, s.size)])
    return keep


def prune_channels(tensors: Mapping[str, np.ndarray], groups: Iterable[ChannelGroup],
                   ratio: float | Mapping[str, float], *, scope: str = "group",
                   criterion: str = "diffusion", min_keep: int = 1,
                   features: Mapping[str, np.ndarray] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Remove the least important ``ratio`` of the channels: of each group (``scope="group"``,
    a mapping gives a ratio per producer) or of all groups together by S (``"global"``),
    keeping at least ``min_keep`` per group. Returns the smaller tensors and the kept channel
    indices per producer."""
    if scope not in ("group", "global"):
        raise ConfigError(f"scope must be 'group' or 'global', got {scope!r}")
    groups = list(groups)
    out = as_float_dict(tensors)
    _check_groups(out, groups)
    scores = group_importance(out, groups, criterion=criterion, features=features)
    keep = _keep_sets(scores, ratio, scope, max(1, min_keep))
    for g in groups:
        k = keep[g.producer]
        for s in g.slices():
            idx = (k[:, None] * s.repeat + np.arange(s.repeat)[None, :]).ravel()
            out[s.name] = np.ascontiguousarray(np.take(out[s.name], idx, axis=s.axis))
    return out, keep


@dataclass(frozen=True)
class PrunePlan:
    """What :func:`prune` does: remove ``ratio`` of the channels (per group, a mapping per
    producer, or ``scope="global"`` by S) ranked by ``criterion``, keeping ``min_keep`` per
    group; fine-tune ``recover`` steps; then sparsify to ``sparsity`` (compressibility loss
    with ``sparsify_finetune`` and ``multiple``, then ``recover`` again, when a task loss is
    given and ``sparsify_finetune.steps`` > 0; else by magnitude)."""

    ratio: float | Mapping[str, float]
    scope: str = "group"
    criterion: str = "diffusion"
    min_keep: int = 1
    recover: FineTune = FineTune(steps=0)
    sparsity: float = 0.0
    sparsify_finetune: FineTune = FineTune(steps=0)
    multiple: float = 0.1


@dataclass
class PruneReport:
    """What :func:`prune` did: channels kept per producer, parameter counts, losses."""

    kept: dict[str, np.ndarray] = field(default_factory=dict)
    parameters_before: int = 0
    parameters_after: int = 0
    recover_loss: list[float] = field(default_factory=list)
    sparsity: float = 0.0

    @property
    def pruning_ratio(self) -> float:
        """Fraction of parameters removed."""
        return 1.0 - self.parameters_after / self.parameters_before if self.parameters_before \
            else 0.0


def prune(tensors: Mapping[str, np.ndarray], groups: Iterable[ChannelGroup], plan: PrunePlan,
          loss_fn: TaskLoss | None = None, features: Mapping[str, np.ndarray] | None = None
          ) -> tuple[dict[str, np.ndarray], PruneReport]:
    """Algorithm 1: rank channels by diffusion, remove the least important (a smaller dense
    model), fine-tune, then sparsify (see :class:`PrunePlan`)."""
    from nnr.reduction.sparsify import (SparsifyPlan, default_trainable, magnitude_sparsify,
                                        sparsify, sparsity)
    report = PruneReport(parameters_before=sum(int(np.size(a)) for a in tensors.values()))
    out, report.kept = prune_channels(tensors, groups, plan.ratio, scope=plan.scope,
                                      criterion=plan.criterion, min_keep=plan.min_keep,
                                      features=features)
    report.parameters_after = sum(int(np.size(a)) for a in out.values())
    if loss_fn is not None and plan.recover.steps:
        from nnr.reduction.finetune import fine_tune
        out, report.recover_loss = fine_tune(out, loss_fn, default_trainable(out), plan.recover,
                                             tool="prune")
    if plan.sparsity > 0:
        if loss_fn is not None and plan.sparsify_finetune.steps:
            out, _ = sparsify(out, loss_fn, SparsifyPlan(
                plan.sparsity, plan.multiple, finetune=plan.sparsify_finetune,
                recover=plan.recover))
        else:
            out = magnitude_sparsify(out, plan.sparsity)
    report.sparsity = sparsity(out)
    return out, report
