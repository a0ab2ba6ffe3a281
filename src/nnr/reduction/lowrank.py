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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction._common import as_float_dict, per_name, weight_names

__all__ = ["LowRank", "rank_for_tolerance", "low_rank", "decompose", "recompose",
           "conv_pair", "max_useful_rank", "g_name", "h_name"]


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
