"""Quantization: qp <-> step size, uniform and dependent quantizers, codebooks, reconstruction."""
from __future__ import annotations

import math

import numpy as np

from nnr.errors import ConfigError

__all__ = ["step_size", "step_size_double", "qp_range", "quantize", "dequantize",
           "dequantize_codebook", "make_codebook"]


def qp_range(qp_density: int) -> tuple[int, int]:
    """The qp values ``iae(6 + qp_density)`` can carry (relative to the MPS qp of 0)."""
    bits = 6 + qp_density
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def step_size_double(qp: int, qp_density: int) -> float:
    """Step size in double precision (NNCodec's Python side, used for codebooks)."""
    k = 1 << qp_density
    mul = k + (qp & (k - 1))
    return mul * 2.0 ** ((qp >> qp_density) - qp_density)


def step_size(qp: int, qp_density: int) -> np.float32:
    """Step size as the C++ core uses it: the double value rounded to float32 (inf when it
    exceeds the float32 range, 0 when it underflows; callers decide whether that is valid)."""
    d = step_size_double(qp, qp_density)
    if d > float(np.finfo(np.float32).max):
        return np.float32(np.inf)
    return np.float32(d)


def quantize(w: np.ndarray, rows: int, cols: int, *, qp: int, qp_density: int, dq: bool,
             scan_order: int = 0, lambda_scale: float = 0.0,
             cabac_unary_length: int = 11) -> np.ndarray:
    """Reconstruction multipliers k (int32, C order) of float32 weights ``w``.

    ``lambda_scale`` > 0 makes the quantizer weigh the estimated CABAC rate against the
    squared error (RDOQ for uniform, a rate-aware trellis for dependent quantization)."""
    from nnr import _core
    flat = np.ascontiguousarray(w, dtype=np.float32).ravel()
    return _core.quantize(flat, rows, cols, scan_order, bool(dq), float(step_size(qp, qp_density)),
                          float(lambda_scale), int(cabac_unary_length))


def dequantize(k: np.ndarray, qp: int, qp_density: int) -> np.ndarray:
    """float32(step) * float32(k), the uniform / DQ reconstruction."""
    from nnr import _core
    return _core.dequantize(np.ascontiguousarray(k, dtype=np.int32).ravel(),
                            float(step_size(qp, qp_density)))


def dequantize_codebook(k: np.ndarray, codebook: np.ndarray, zero_offset: int, qp: int,
                        qp_density: int) -> np.ndarray:
    """codebook[k + CbZeroOffset] * step in float64, as NNCodec reconstructs codebook tensors."""
    idx = k.astype(np.int64) + zero_offset
    if idx.size and (idx.min() < 0 or idx.max() >= len(codebook)):
        from nnr.errors import NonConformingBitstreamError
        raise NonConformingBitstreamError("codebook index outside the codebook")
    values = np.asarray(codebook, dtype=np.int64).astype(np.float64) * step_size_double(qp, qp_density)
    return values[idx]


def make_codebook(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codebook of the distinct levels (sorted) and the index of each level in it."""
    codebook, index = np.unique(k, return_inverse=True)
    return codebook.astype(np.int64), index.astype(np.int32).ravel()


def qp_for_step(step: float, qp_density: int) -> int:
    """Smallest qp whose step size is at least ``step`` (qp grows by 2^qp_density per octave)."""
    if not step > 0 or not math.isfinite(step):
        raise ConfigError(f"invalid step size {step}")
    k = 1 << qp_density
    qp = math.floor(math.log2(step)) * k - k
    while step_size_double(qp, qp_density) < step:
        qp += 1
    return qp
