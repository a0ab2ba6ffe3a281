"""Low-rank decomposition (the NNR "DC" tool): W, viewed as the matrix ``(out, prod(rest))``,
is coded as G (``out x r``) and H (``r x prod(rest)``) with ``W ~= G @ H``.

The rank is the smallest whose relative Frobenius error ``||W - G H|| / ||W||`` stays within
the tolerance; the decomposition is skipped when it would not reduce the parameter count
(``r >= m n / (m + n)``). G and H share the singular values (``G = U sqrt(S)``,
``H = sqrt(S) V^T``) so both have the same range for quantization.

In the bitstream (``nnr.encode(..., low_rank=tol)``) the pair is two NDUs ``<w>_G`` then
``<w>_H`` (or G and H inside the weight's NNR_PT_BLOCK unit) with ``compressed_parameter_types``
DC, ``decomposition_rank`` r, ``g_number_of_rows`` m and the weight's ``tensor_dimensions``;
the decoder recomposes ``W = (G @ H).reshape(dims)`` (:func:`nnr.decoder.decode_recomposed`).
In a framework a decomposed conv kernel (out, in, k, k) runs as a k x k conv with r outputs
(H) followed by a 1 x 1 conv (G) (:func:`conv_pair`); a linear layer as two linear layers.

With training data the factors can be fine-tuned (:func:`fine_tune_low_rank`: G and H trained
on the task loss of the model with ``W = G H``) and then coded as they are:
``nnr.encode(tensors, low_rank={w: LowRank, ...})`` (the weight ``w`` stays in ``tensors``; its
values are not used, only its place and shape). ``<w>_G`` / ``<w>_H`` tensors passed to the
encoder as ordinary tensors are coded as ordinary tensors (no DC signalling, decoders return
them as they are).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction._common import FineTune, TaskLoss, as_float_dict, per_name, weight_names

__all__ = ["LowRank", "rank_for_tolerance", "low_rank", "decompose", "recompose",
           "conv_pair", "max_useful_rank", "g_name", "h_name", "check_factors",
           "apply_low_rank", "fine_tune_low_rank"]


def g_name(weight: str) -> str:
    return weight + "_G"


def h_name(weight: str) -> str:
    return weight + "_H"


@dataclass
class LowRank:
    """A decomposition: ``g`` (m x r), ``h`` (r x n), the weight's ``shape``, the relative
    Frobenius error of ``g @ h`` before quantization."""

    g: np.ndarray
    h: np.ndarray
    shape: tuple[int, ...]
    error: float

    @property
    def rank(self) -> int:
        return int(self.g.shape[1])

    def recompose(self) -> np.ndarray:
        return recompose(self.g, self.h, self.shape)


def max_useful_rank(m: int, n: int) -> int:
    """The largest rank that still saves parameters: r (m + n) < m n."""
    return max(0, -(-(m * n) // (m + n)) - 1)


def rank_for_tolerance(singular_values: np.ndarray, tol: float) -> int:
    """Smallest r with ``sqrt(sum_{i>=r} s_i^2) <= tol * sqrt(sum s_i^2)``."""
    s2 = np.asarray(singular_values, np.float64) ** 2
    total = s2.sum()
    if total == 0:
        return 0
    tail = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])   # tail[r] = sum_{i>=r}
    return int(np.argmax(tail <= (tol * tol) * total))


def low_rank(w: np.ndarray, tol: float, *, max_rank: int | None = None) -> LowRank | None:
    """Decompose ``w`` within relative Frobenius error ``tol``; None when the needed rank
    would not reduce the parameter count (or exceeds ``max_rank``)."""
    if not 0 <= tol < 1:
        raise ConfigError(f"low-rank tolerance must be in [0, 1), got {tol}")
    w = np.asarray(w)
    if w.ndim < 2 or w.dtype.kind != "f" or not w.size:
        return None
    m = w.shape[0]
    a = w.reshape(m, -1).astype(np.float64)
    n = a.shape[1]
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    r = max(1, rank_for_tolerance(s, tol))
    limit = max_useful_rank(m, n) if max_rank is None else min(max_rank, max_useful_rank(m, n))
    if r > limit:
        return None
    root = np.sqrt(s[:r])
    g = (u[:, :r] * root).astype(np.float32)
    h = (root[:, None] * vt[:r]).astype(np.float32)
    err = float(np.sqrt(np.sum(s[r:] ** 2) / np.sum(s ** 2))) if np.sum(s ** 2) else 0.0
    return LowRank(g, h, tuple(int(d) for d in w.shape), err)


def decompose(tensors: Mapping[str, np.ndarray], tol: float | Mapping[str, float], *,
              names: Iterable[str] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, LowRank]]:
    """Replace every weight among ``names`` (default: all with two or more dimensions) for
    which a decomposition pays off by ``<w>_G`` and ``<w>_H`` (in its place). ``tol`` may be a
    per-tensor mapping (weights without an entry are kept). Returns the tensors and the
    decompositions (their ``shape`` is what :func:`recompose` needs)."""
    src = as_float_dict(tensors)
    chosen = set(weight_names(src, names))
    if isinstance(tol, Mapping):
        chosen &= set(tol)
    out: dict[str, np.ndarray] = {}
    done: dict[str, LowRank] = {}
    for name, arr in src.items():
        lr = low_rank(arr, per_name(tol, name)) if name in chosen else None
        if lr is None:
            out[name] = arr
            continue
        for new in (g_name(name), h_name(name)):
            if new in src:
                raise ConfigError(f"cannot decompose {name!r}: a tensor {new!r} exists")
        out[g_name(name)], out[h_name(name)] = lr.g, lr.h
        done[name] = lr
    return out, done


def recompose(g: np.ndarray, h: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``(G @ H).reshape(shape)`` in float64, returned as float32."""
    g = np.asarray(g, np.float64)
    h = np.asarray(h, np.float64)
    if g.ndim != 2 or h.ndim != 2 or g.shape[1] != h.shape[0]:
        raise ConfigError(f"G {g.shape} and H {h.shape} do not multiply")
    if g.shape[0] * h.shape[1] != int(np.prod(shape)):
        raise ConfigError(f"G @ H has {g.shape[0] * h.shape[1]} elements, the weight "
                          f"{tuple(shape)} {int(np.prod(shape))}")
    return (g @ h).reshape(tuple(shape)).astype(np.float32)


def conv_pair(g: np.ndarray, h: np.ndarray, shape: Sequence[int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """The two layers that replace a decomposed conv (or linear) weight of ``shape``:
    H as a conv with r outputs and the original kernel (``(r, in, *k)``), then G as a
    1 x 1 conv (``(out, r, 1, ...)``). For a linear weight: ``(r, in)`` then ``(out, r)``."""
    shape = tuple(int(d) for d in shape)
    r = np.shape(g)[1]
    first = np.asarray(h, np.float32).reshape((r,) + shape[1:])
    second = np.asarray(g, np.float32).reshape((shape[0], r) + (1,) * (len(shape) - 2))
    return first, second


def check_factors(weight: str, lr: LowRank) -> None:
    """That ``lr`` can be coded as the DC pair of ``weight``: finite float G (m x r) and
    H (r x n), r >= 1, m the weight's first dimension and m n its size."""
    if not isinstance(lr, LowRank):
        raise ConfigError(f"the factors of {weight!r} must be an nnr.reduction.LowRank")
    g, h = np.asarray(lr.g), np.asarray(lr.h)
    shape = tuple(int(d) for d in lr.shape)
    if g.ndim != 2 or h.ndim != 2 or g.shape[1] != h.shape[0] or g.shape[1] < 1:
        raise ConfigError(f"factors of {weight!r}: G {g.shape} and H {h.shape} do not multiply")
    if len(shape) < 2 or g.shape[0] != shape[0] or g.shape[0] * h.shape[1] != int(np.prod(shape)):
        raise ConfigError(f"factors of {weight!r}: G {g.shape} @ H {h.shape} is not a weight "
                          f"of shape {shape}")
    for what, a in (("G", g), ("H", h)):
        if a.dtype.kind != "f" or not np.isfinite(a).all():
            raise ConfigError(f"factors of {weight!r}: {what} must be finite floats")


def _model_view(tensors: Mapping[str, np.ndarray], factors: Mapping[str, LowRank]
                ) -> tuple[dict[str, np.ndarray], list[str]]:
    """The model's tensors without the decomposed weights (and without their ``<w>_G`` /
    ``<w>_H``), and the model's names in order with each decomposed weight where it (or its
    G) stood."""
    rest: dict[str, np.ndarray] = {}
    order: list[str] = []
    for name, arr in tensors.items():
        if name in factors:
            order.append(name)
            continue
        base = name[:-2] if name.endswith(("_G", "_H")) else None
        if base is not None and base in factors:
            if base not in tensors and base not in order:
                order.append(base)
            continue
        rest[name] = arr
        order.append(name)
    for w in factors:
        if w not in order:
            raise ConfigError(f"no weight {w!r} (nor {g_name(w)!r}) among the tensors")
    return rest, order


def apply_low_rank(tensors: Mapping[str, np.ndarray], factors: Mapping[str, LowRank]
                   ) -> dict[str, np.ndarray]:
    """The model with every decomposed weight ``w`` of ``factors`` replaced by
    ``(G @ H).reshape(shape)`` (``tensors`` may hold W or its ``<w>_G`` / ``<w>_H``)."""
    src = as_float_dict(tensors)
    rest, order = _model_view(src, factors)
    return {n: factors[n].recompose() if n in factors else rest[n] for n in order}


def fine_tune_low_rank(tensors: Mapping[str, np.ndarray], factors: Mapping[str, LowRank],
                       loss_fn: TaskLoss, finetune: FineTune = FineTune()
                       ) -> tuple[dict[str, LowRank], list[float]]:
    """Fine-tune the low-rank factors ``factors`` (``{weight: LowRank}``, e.g. the second
    result of :func:`decompose`) on the task loss: G and H of every weight are trained for
    ``finetune.steps`` steps while ``loss_fn`` sees the model under its own names with
    ``W = (G @ H).reshape(shape)`` (differentiable); every other tensor stays as it is.
    ``tensors`` holds the model, each decomposed weight as W or as its ``<w>_G`` / ``<w>_H``
    (the factors given are the starting point either way). The rank does not change.

    Returns the tuned factors (``error``: the relative Frobenius distance of ``G H`` from
    the original W, or from the initial ``G H`` when W is not in ``tensors``) and the task
    loss of every step. Code them with ``nnr.encode(tensors, low_rank=tuned)``."""
    from nnr.reduction._common import require_torch
    from nnr.reduction.finetune import fine_tune
    torch = require_torch("fine_tune_low_rank")
    if not factors:
        raise ConfigError("fine_tune_low_rank: no factors to tune")
    src = as_float_dict(tensors)
    for w, lr in factors.items():
        check_factors(w, lr)
        if w in src and tuple(np.shape(src[w])) != tuple(lr.shape):
            raise ConfigError(f"factors of {w!r} are for shape {tuple(lr.shape)}, the tensor "
                              f"is {np.shape(src[w])}")
    rest, order = _model_view(src, factors)
    work = dict(rest)
    keys: dict[str, tuple[str, str]] = {}
    for w, lr in factors.items():
        kg, kh = "\0G\0" + w, "\0H\0" + w       # cannot clash with a tensor name
        work[kg] = np.asarray(lr.g, np.float32)
        work[kh] = np.asarray(lr.h, np.float32)
        keys[w] = (kg, kh)
    shapes = {w: tuple(int(d) for d in lr.shape) for w, lr in factors.items()}

    def task(params):
        view = {}
        for n in order:
            if n in keys:
                kg, kh = keys[n]
                view[n] = torch.matmul(params[kg], params[kh]).reshape(shapes[n])
            else:
                view[n] = params[n]
        return loss_fn(view)

    trainable = [k for pair in keys.values() for k in pair]
    tuned, history = fine_tune(work, task, trainable, finetune, tool="fine_tune_low_rank")
    out: dict[str, LowRank] = {}
    for w, (kg, kh) in keys.items():
        g, h = tuned[kg], tuned[kh]
        ref = src[w] if w in src else factors[w].recompose()
        ref64 = np.asarray(ref, np.float64).reshape(shapes[w][0], -1)
        norm = float(np.linalg.norm(ref64))
        diff = float(np.linalg.norm(g.astype(np.float64) @ h.astype(np.float64) - ref64))
        out[w] = LowRank(g, h, shapes[w], diff / norm if norm else 0.0)
    return out, history
