"""Encoder-side low-bit quantization (the decoder needs nothing: the results are ordinary
uniform levels with a qp).

* **Stochastic binary / ternary** quantization (``EncodeConfig.stochastic``): a weight tensor
  becomes levels in {-1, +1} or {-1, 0, +1} times one step ``d`` per tensor, chosen by stochastic
  rounding so that the decoded value is ``w`` in expectation wherever ``|w| <= d``.
* **Integer-aligned** quantization (``EncodeConfig.bit_depth``), NNCodec's ``int_quant_bw``:
  per tensor the qp whose step maps the 99.95th percentile of ``|w|`` onto the largest level of
  a ``b``-bit integer, and levels clipped to that integer range.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from nnr.quantization import qp_for_step, qp_range, step_size, step_size_double

__all__ = ["STOCHASTIC_MODES", "stochastic_scale", "nearest_qp", "tensor_rng",
           "stochastic_levels", "bit_depth_of", "bit_depth_qp", "bit_depth_range",
           "nncodec_percentile", "nncodec_overflow_qp"]

STOCHASTIC_MODES = ("binary", "ternary")


# ------------------------------------------------------------------ stochastic binary / ternary

def stochastic_scale(w: np.ndarray, mode: str) -> float:
    """The per-tensor magnitude ``d`` (before it is rounded to a step size).

    ``binary``: ``d = mean|w|`` (the least-squares scale of sign(w), as in BinaryConnect /
    XNOR-Net). ``ternary``: the TWN rule (Li et al., Ternary Weight Networks): threshold
    ``0.7 mean|w|``, ``d`` = the mean of the magnitudes above it.

    Why TWN rather than the ``d`` that minimises the expected squared error of stochastic
    rounding (``sum_{|w|<=d} |w|(d - |w|) + sum_{|w|>d} (|w| - d)^2``): that minimiser is pulled
    up by a few outliers (their clipping error is quadratic, the rounding variance of the rest
    only linear), so that most small weights round to 0; and on the Fashion-MNIST CNN (weights
    only, 20 seeds) TWN's ``d`` kept more accuracy: top-1 0.667 +- 0.089 against
    0.621 +- 0.095. A larger ``d`` (less clipping, more variance) was worse still (3-6 seeds
    each): 2 mean|w| 0.55, max|w| (TernGrad's choice) 0.27; for binary, 1.5 mean|w| gave 0.38
    and the error-minimising ``d`` (about 0.8 mean|w|) 0.25, against 0.42 for mean|w|."""
    a = np.abs(np.asarray(w, dtype=np.float64)).ravel()
    if not a.size or not a.any():
        return 0.0
    mean = float(a.mean())
    if mode == "binary":
        return mean
    return float(a[a > 0.7 * mean].mean())


def nearest_qp(d: float, qp_density: int) -> int:
    """The qp (in the range the NDU can carry) whose step size is nearest to ``d``."""
    lo, hi = qp_range(qp_density)
    if not d > 0 or not math.isfinite(d):
        return 0
    qp = min(max(qp_for_step(d, qp_density), lo), hi)
    if qp > lo and abs(step_size_double(qp - 1, qp_density) - d) <= \
            abs(step_size_double(qp, qp_density) - d):
        qp -= 1
    return qp


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one tensor: a function of the seed and the tensor's name only, so
    the result does not depend on thread count or tensor order."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def stochastic_levels(w: np.ndarray, mode: str, qp_density: int, rng: np.random.Generator
                      ) -> tuple[np.ndarray, int]:
    """Levels (int32, flat, C order) in {-1, 1} (binary) or {-1, 0, 1} (ternary) and the qp
    whose step ``d`` they multiply.

    binary: ``P(+d) = (w + d) / (2d)`` clipped to [0, 1]; ternary: ``P(sign(w) d) = |w| / d``
    for ``|w| <= d``, 1 beyond (values beyond ``d`` clip to ``+-d``). The probabilities use the
    step the decoder reconstructs with (float32), so ``E[decoded] = w`` for ``|w| <= d``. A
    tensor without a nonzero value stays zero (qp 0)."""
    if mode not in STOCHASTIC_MODES:
        raise ValueError(f"unknown stochastic mode {mode!r}")
    x = np.asarray(w, dtype=np.float64).ravel()
    d = stochastic_scale(x, mode)
    if d == 0.0:
        return np.zeros(x.size, dtype=np.int32), 0
    qp = nearest_qp(d, qp_density)
    step = float(step_size(qp, qp_density))        # what the decoder multiplies by
    u = rng.random(x.size)
    if mode == "binary":
        p = np.clip((x + step) / (2.0 * step), 0.0, 1.0)
        k = np.where(u < p, 1, -1)
    else:
        p = np.minimum(np.abs(x) / step, 1.0)
        k = np.where(u < p, np.sign(x), 0)
    return k.astype(np.int32), qp


# ---------------------------------------------------------------- integer-aligned (bit depth)

def bit_depth_of(bit_depth: int, weight: bool) -> int:
    """The bit depth a tensor gets: NNCodec gives non-weight (1-D) tensors at least 8 bits."""
    return bit_depth if bit_depth > 7 or weight else 8


def _unsigned(w: np.ndarray) -> bool:
    """NNCodec's unsigned-integer support: a tensor without negative values uses the range
    [0, 2^b - 1]."""
    return not bool((w < 0).any())


def nncodec_percentile(w: np.ndarray) -> float:
    """``np.percentile(abs(w), 99.95)`` as NNCodec 2.1.3 computes it on a float32 tensor with
    numpy 1.x: linear interpolation whose difference is taken in float32 and the rest in
    float64 (numpy 2 returns a float32 and differs in the last bits)."""
    x = np.abs(np.asarray(w, dtype=np.float32)).ravel()
    n = x.size
    vi = (n - 1) * (np.float64(99.95) / np.float64(100.0))
    if vi >= n - 1:
        return float(x.max())
    lo = int(math.floor(vi))
    gamma = float(vi - lo)
    part = np.partition(x, (lo, lo + 1))
    a, b = part[lo], part[lo + 1]
    diff = float(np.float32(b - a))
    if gamma >= 0.5:
        return float(b) - diff * (1.0 - gamma)
    return float(a) + diff * gamma


def bit_depth_qp(w: np.ndarray, bit_depth: int, qp_density: int, weight: bool) -> int:
    """NNCodec's ``ApproxInfo._get_intaligned_qp`` (2.1.3): step = percentile99.95(|w|) /
    (2^(b-1) - 1), or / (2^b - 1) for a tensor without negative values, max|w| instead of a
    zero percentile; qp from that step (``get_qp_from_stepsize``, fractional), clipped to the
    qp range and rounded half to even. An all-zero tensor gets qp 0."""
    x = np.asarray(w, dtype=np.float32)
    if not x.size or not x.any():
        return 0
    bw = bit_depth_of(bit_depth, weight)
    denom = (1 << bw) - 1 if _unsigned(x) else (1 << (bw - 1)) - 1
    step = nncodec_percentile(x) / denom
    if step == 0.0:
        step = float(np.abs(x).max()) / denom
    k = 1 << qp_density
    base = np.floor(np.log2(np.float64(step))) * k
    qp = base + ((np.float64(step) * k) / 2.0 ** (base / k) - k)
    lo, hi = qp_range(qp_density)
    qp = min(max(qp, np.float64(lo)), np.float64(hi))
    return int(np.round(qp))


def nncodec_overflow_qp(w: np.ndarray, qp_density: int) -> int:
    """The qp NNCodec's ``quantLayer`` falls back to when the levels would overflow int32:
    ``ceil`` of the (float32) qp of the step ``max|w| / (2^31 - 3)``."""
    max_abs = float(np.abs(np.asarray(w, dtype=np.float32)).max())
    step = max_abs / float((1 << 31) - 3)
    k = 1 << qp_density
    base = math.floor(math.log2(step)) * k
    return int(math.ceil(np.float32(base + ((step * k) / 2.0 ** (base / k) - k))))


def bit_depth_range(w: np.ndarray, bit_depth: int, weight: bool) -> tuple[int, int]:
    """The level range of a tensor: signed ``[-2^(b-1), 2^(b-1) - 1]``, or ``[0, 2^b - 1]``
    for a tensor without negative values (NNCodec's ``clip_for_int_aligned``)."""
    bw = bit_depth_of(bit_depth, weight)
    if _unsigned(np.asarray(w)):
        return 0, (1 << bw) - 1
    return -(1 << (bw - 1)), (1 << (bw - 1)) - 1
