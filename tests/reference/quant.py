"""Step size, NNCodec's encoder-side quantizers (lambda 0) and reconstruction.

``quantize_uniform`` and ``quantize_dependent`` reproduce ``Encoder.quantLayer`` of NNCodec 2.1.3
(``bindings.cpp``, ``Lib/CommonLib/Quant.cpp``) with ``lambdaScale = 0``, NNCodec's default:
URQ is a float32 rounding, DQ an 8-state Viterbi trellis that minimizes the squared error only.
"""
from __future__ import annotations

import numpy as np

from .tables import DQ_NEXT_STATE
from .tensor_coder import scan_positions

__all__ = ["step_size", "quantize_uniform", "quantize_dependent", "dequantize"]

_HALF_MAX = 0.5 * np.finfo(np.float64).max   # NNCodec's "unreachable" trellis cost


def step_size(qp: int, qp_density: int) -> float:
    """Delta = (2^qd + (qp & (2^qd - 1))) * 2^((qp >> qd) - qd), rounded to float32."""
    k = 1 << qp_density
    mul = k + (qp & (k - 1))          # two's-complement AND, also for negative qp
    shift = qp >> qp_density          # arithmetic shift
    return float(np.float32(mul * 2.0 ** (shift - qp_density)))


def _round_half_away(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.trunc(x + np.copysign(0.5, x))


def quantize_uniform(w: np.ndarray, qp: int, qp_density: int) -> np.ndarray:
    """q = round(float32(float32(1 / Delta) * w)), half away from zero; int32, w's shape."""
    w = np.asarray(w, np.float32)
    scale = np.float32(1.0) / np.float32(step_size(qp, qp_density))
    q = _round_half_away(scale * w)
    if np.any(q > 2**31 - 1) or np.any(q < -2**31):
        raise OverflowError("levels overflow int32 (NNCodec would raise qp)")
    return q.astype(np.int32)


def _trellis_branches() -> list[list[tuple[int, int]]]:
    """Incoming branches (previous state, candidate slot) of every state, in NNCodec's order
    (which decides ties). Slots: k & 3 for the four nonzero candidates, 4 for zero. A state
    with quantizer Q0 (even state) reaches parity 0 through slot 0 and parity 1 through slot 2;
    Q1 through slots 3 and 1; the zero candidate travels on the parity-0 branch."""
    branches: list[list[tuple[int, int]]] = [[] for _ in range(8)]
    for prev in range(8):
        qid = prev & 1
        nxt0, nxt1 = DQ_NEXT_STATE[prev]
        branches[nxt0].append((prev, 3 * qid))
        branches[nxt0].append((prev, 4))
        branches[nxt1].append((prev, 2 - qid))
    return branches


def quantize_dependent(w: np.ndarray, qp: int, qp_density: int, scan_order: int, rows: int,
                       cols: int) -> np.ndarray:
    """NNCodec's TCQ with lambda 0: per weight the candidates k = 0 and four consecutive
    multipliers from max(1, int(|w|/Delta) - 1); Viterbi over the 8 DQ states in scan order with
    cost = sum of (|w|/Delta - k)^2 in double. Ties: the first branch (in
    :func:`_trellis_branches` order) with strictly smaller cost wins; at the end the lowest
    state among equals. Returns the multipliers k (int32, w's shape)."""
    w = np.asarray(w, np.float32)
    flat = w.reshape(-1)
    if flat.size != rows * cols:
        raise ValueError("w does not hold rows*cols values")
    delta = step_size(qp, qp_density)
    check = _round_half_away(flat * (np.float32(1.0) / np.float32(delta)))
    if np.any(check > 2**31 - 3) or np.any(check < -(2**31 - 2)):
        raise OverflowError("levels overflow int32 (NNCodec would raise qp)")
    qscale = 1.0 / delta
    branches = _trellis_branches()
    order = scan_positions(rows, cols, scan_order)
    cost = [0.0] + [_HALF_MAX] * 7
    decisions = []
    for pos in order:
        value = float(flat[pos])
        sign = -1 if value < 0 else 1
        org = qscale * value * sign
        slots: list[tuple[float, int]] = [(0.0, 0)] * 5      # (distortion, q)
        slots[4] = (org * org, 0)
        first = max(1, int(org) - 1)
        for k in range(first, first + 4):
            slots[k & 3] = ((org - k) * (org - k), sign * ((k + 1) >> 1))
        new_cost, step = [0.0] * 8, []
        for state in range(8):
            best, choice = np.finfo(np.float64).max, (0, 0)
            for prev, slot in branches[state]:
                c = cost[prev] + slots[slot][0]
                if c < best:
                    best, choice = c, (slots[slot][1], prev)
            new_cost[state] = best
            step.append(choice)
        cost = new_cost
        decisions.append(step)
    state = min(range(8), key=lambda s: (cost[s], s))
    out = np.zeros(flat.size, np.int32)
    for i in range(len(order) - 1, -1, -1):
        q, prev = decisions[i][state]
        if q != 0:
            out[order[i]] = 2 * q - (prev & 1) * (1 if q > 0 else -1)
        state = prev
    return out.reshape(w.shape)


def dequantize(k: np.ndarray, qp: int, qp_density: int) -> np.ndarray:
    """float32(Delta) * float32(k), a float32 product (no FMA, no wider intermediate)."""
    return np.float32(step_size(qp, qp_density)) * np.asarray(k).astype(np.float32)
