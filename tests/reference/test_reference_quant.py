"""The oracle's step size, quantizers and reconstruction."""
from __future__ import annotations

import random

import numpy as np
import pytest

from nnr.entropy.spec import TensorCoding, TensorSpec

from .quant import dequantize, quantize_dependent, quantize_uniform, step_size
from .tensor_coder import encode_payload


def weights(seed: int, n: int, scale: float) -> np.ndarray:
    """Deterministic float32 test weights (only exactly rounded IEEE operations)."""
    rng = random.Random(seed)
    return np.array([((2 * rng.random() - 1) ** 3) * scale for _ in range(n)], np.float32)


@pytest.mark.parametrize("qp,qd,expected", [
    (-38, 2, 6 * 2.0**-12), (-32, 2, 2.0**-8), (-75, 2, 5 * 2.0**-21), (0, 2, 1.0), (1, 2, 1.25),
    (-1, 2, 0.875), (-20, 1, 2.0**-10), (-21, 1, 1.5 * 2.0**-11), (-44, 3, 12 * 2.0**-9),
    (5, 0, 32.0), (-128, 2, 2.0**-32)])
def test_step_size(qp: int, qd: int, expected: float) -> None:
    assert step_size(qp, qd) == expected
    assert step_size(qp + (1 << qd), qd) == 2 * step_size(qp, qd)


def test_dequantize_is_a_float32_product() -> None:
    k = np.array([0, 1, -1, 7, -123456, 2**24 + 1], np.int32)
    got = dequantize(k, -38, 2)
    assert got.dtype == np.float32
    want = np.float32(step_size(-38, 2)) * k.astype(np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_uniform_rounds_half_away_from_zero_in_float32() -> None:
    d = step_size(-32, 2)
    w = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49, -0.49], np.float32) * np.float32(d)
    assert quantize_uniform(w, -32, 2).tolist() == [1, -1, 2, -2, 3, -3, 0, 0]
    # qp -38: float32(1/Delta) = 682.66669 is rounded up. For the float32 just below 2.5*Delta
    # (w/Delta = 2.49999996 in double) NNCodec's quantLayer returns 3, not 2: the product
    # float32(1/Delta) * w is formed and rounded in float32 (checked with the peer).
    w = np.nextafter(np.float32(2.5 * step_size(-38, 2)), np.float32(0))
    assert float(w) / step_size(-38, 2) < 2.5
    assert quantize_uniform(np.array([w, -w]), -38, 2).tolist() == [3, -3]


# Expected multipliers: NNCodec 2.1.3 Encoder.quantLayer(w, q, dq_flag, qp_density, qp,
# lambdaScale=0, 10, scan_order) on these inputs (peer venv, run once).
PINNED_URQ = {
    "blocks_10x9": [
        31, 29, -29, -23, 12, 4, 2, -2, 0, 0, 0, -13, 0, 0, 4, 40,
        30, 0, 0, -4, -33, -35, 0, -2, -1, 20, 0, 0, -6, -35, -2, -16,
        0, 41, 2, -11, 20, 9, 4, 22, 6, 8, -1, 36, 32, -13, 5, 3,
        0, 0, 0, 25, 0, 12, -1, 18, 21, 0, 0, 24, 4, 0, -7, -2,
        3, -12, 22, -4, 23, -2, 31, 3, 0, 0, 1, 0, -2, -8, 0, 27,
        1, -25, 11, 4, 22, -10, 5, -28, 1, -4,
    ],
    "raster_6x7": [
        -13, 11, 5, -4, 0, 0, 1, 7, -18, -29, 10, 0, 5, -34, 0, 3,
        -5, 24, 18, -28, -29, 0, 23, 0, -6, 0, -29, -6, 0, 0, -5, -5,
        -6, 0, -3, -30, 11, 0, 1, -8, 33, 13,
    ],
    "ties_4x5": [
        -5, -5, -4, -4, -3, -3, -2, -2, -1, -1, 0, 1, 1, 2, 2, 3,
        3, 4, 4, 5,
    ],
    "vector_13": [
        -354, 2, -43, 22, 39, -1612, -2268, 756, -274, -369, 2394, -1, 749,
    ],
}
PINNED_DQ = {
    "blocks_10x9": [
        32, 30, -28, -23, 13, 4, 1, -2, 0, 0, 0, -14, 0, 0, 3, 40,
        30, 0, 0, -4, -33, -34, 0, -2, 0, 19, 0, 0, -6, -36, -2, -16,
        0, 41, 2, -11, 21, 9, 3, 22, 6, 8, -1, 37, 33, -13, 6, 3,
        0, 0, 0, 25, 1, 12, -1, 18, 21, 0, 0, 25, 3, 0, -7, -2,
        3, -12, 23, -4, 23, -2, 31, 4, 0, 0, 1, 0, -2, -9, 0, 26,
        1, -25, 10, 4, 22, -10, 5, -28, 2, -4,
    ],
    "raster_6x7": [
        -14, 10, 5, -4, 0, 0, 1, 6, -19, -29, 10, 0, 5, -34, 0, 3,
        -6, 24, 18, -28, -29, 0, 23, -1, -7, 0, -28, -5, 0, 0, -5, -5,
        -6, 0, -3, -30, 10, 0, 1, -9, 33, 12,
    ],
    "ties_4x5": [
        -4, -6, -4, -3, -3, -2, -2, -2, -1, 0, 0, 1, 1, 1, 2, 3,
        3, 4, 4, 5,
    ],
    "vector_13": [
        -354, 2, -43, 22, 39, -1613, -2268, 755, -274, -369, 2395, -1, 749,
    ],
}


def _pin_inputs():
    return {
        "raster_6x7": (weights(1, 42, 0.05), -38, 2, 0, 6, 7),
        "blocks_10x9": (weights(2, 90, 0.02), -44, 2, 1, 10, 9),
        "vector_13": (weights(3, 13, 0.3), -26, 1, 0, 13, 1),
        "ties_4x5": ((np.arange(20, dtype=np.float32) - 10) * np.float32(step_size(-40, 2) / 2),
                     -40, 2, 0, 4, 5),
    }


@pytest.mark.parametrize("name", sorted(_pin_inputs()))
def test_quantizers_pinned_to_nncodec(name: str) -> None:
    w, qp, qd, scan, rows, cols = _pin_inputs()[name]
    assert quantize_uniform(w, qp, qd).tolist() == PINNED_URQ[name]
    k = quantize_dependent(w, qp, qd, scan, rows, cols)
    assert k.dtype == np.int32 and k.tolist() == PINNED_DQ[name]


@pytest.mark.parametrize("scan", [0, 1, 2])
def test_dependent_quantization_is_codable_and_close(scan: int) -> None:
    rows, cols = 33, 20
    w = weights(10 + scan, rows * cols, 0.05)
    k = quantize_dependent(w, -38, 2, scan, rows, cols)
    spec = TensorSpec(rows=rows, cols=cols, scan_order=scan, dq=True)
    encode_payload([k], [spec], [TensorCoding(qp=-38)])   # every k fits its DQ state
    err = np.abs(dequantize(k, -38, 2) - w) / step_size(-38, 2)
    assert err.max() < 2.0
