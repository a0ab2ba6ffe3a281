"""The native core against the pure-Python reference coder (tests/reference), bit for bit.

Hypothesis draws tensors and coding tools; the C++ payload bytes, decoded levels, side
information and entry points must equal the reference's, and the C++ quantizers must equal the
reference quantizers.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nnr import _core
from nnr.entropy import TensorCoding, TensorSpec, decode_payload, encode_payload
from nnr.quantization import dequantize, quantize, step_size
from tests.reference import quant as ref_quant
from tests.reference import tensor_coder as ref

DQ_NEXT = [[0, 2], [7, 5], [1, 3], [6, 4], [2, 0], [5, 7], [3, 1], [4, 6]]


@st.composite
def tensors(draw):
    """A TensorSpec with valid levels k for it (and its coding choices)."""
    rows = draw(st.integers(1, 40))
    cols = draw(st.integers(1, 40))
    profile = draw(st.sampled_from([0, 1]))
    spec = TensorSpec(rows=rows, cols=cols, scan_order=draw(st.integers(0, 4)),
                      dq=draw(st.booleans()), has_qp=draw(st.booleans()),
                      qp_density=draw(st.integers(1, 3)), profile=profile,
                      cabac_unary_length=draw(st.integers(1, 11)), legacy_v03=profile == 0)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    scale = draw(st.sampled_from([0.5, 3.0, 40.0]))
    q = np.rint(rng.laplace(0, scale, rows * cols)).astype(np.int64)
    q[rng.random(rows * cols) < draw(st.floats(0, 0.9))] = 0
    if profile == 1 and draw(st.booleans()) and rows > 1:
        q.reshape(rows, cols)[rng.random(rows) < 0.4] = 0   # zero rows for row skipping
    codebook = profile == 1 and not spec.dq and draw(st.booleans())
    if codebook:
        size = draw(st.integers(1, 9))
        zero = draw(st.integers(0, size - 1))
        q = np.clip(q, -zero, size - 1 - zero)
        spec.codebook_size, spec.codebook_zero_offset = size, zero
    if profile == 1 and draw(st.booleans()):
        spec.parent_node_id_present = True
        spec.tca_base = rng.integers(-3, 4, rows * cols).astype(np.int32) if draw(st.booleans()) \
            else None
        spec.hdsp_history = (rng.random(rows * cols) < 0.5).astype(np.uint8)
    k = _k_of_q(q, spec)
    row_skip = None
    if profile == 1 and rows > 1 and cols > 1 and spec.codebook_size != 1 and draw(st.booleans()):
        row_skip = (~k.reshape(rows, cols).any(axis=1)).astype(np.uint8)
        if spec.dq and spec.scan_order > 0:
            row_skip = None   # nnr never writes this combination (docs/deviations.md)
    flags = profile == 1 and rows > 1 and cols > 1 and spec.codebook_size != 1
    coding = TensorCoding(qp=draw(st.integers(-(1 << (5 + spec.qp_density)),
                                              (1 << (5 + spec.qp_density)) - 1)),
                          hdsp=flags and spec.parent_node_id_present and draw(st.booleans()),
                          row_skip=row_skip)
    return spec, k, coding


def _k_of_q(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Multipliers k for indices q along the coding order (DQ states follow the scan)."""
    if not spec.dq:
        return q.astype(np.int32)
    k = np.zeros(q.size, np.int32)
    state = 0
    for pos in ref.scan_positions(spec.rows, spec.cols, spec.scan_order):
        v = int(q[pos])
        k[pos] = 0 if v == 0 else 2 * v - (1 if v > 0 else -1) * (state & 1)
        state = DQ_NEXT[state][v & 1]
    return k


@settings(deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=3), st.booleans())
def test_payload_bytes_and_decoding_equal_reference(items, param_opt):
    profile = items[0][0].profile
    items = [it for it in items if it[0].profile == profile]
    specs = [s for s, _, _ in items]
    levels = [k for _, k, _ in items]
    codings = [c for _, _, c in items]
    ours, _ = encode_payload(levels, specs, codings, param_opt)
    theirs, ref_eps = ref.encode_payload(levels, specs, codings, param_opt)
    assert ours == theirs
    got, got_codings, got_eps, used = decode_payload(ours, specs)
    want, want_codings, want_used = ref.decode_payload(theirs, specs)
    assert used == want_used == len(ours)
    for g, w, k in zip(got, want, levels):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(g, k)
    for gc, wc in zip(got_codings, want_codings):
        assert gc.qp == wc.qp and gc.hdsp == wc.hdsp
        assert (gc.row_skip is None) == (wc.row_skip is None)
    assert [p for _, p in got_eps] == ref_eps


@settings(deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 4), st.booleans(),
       st.integers(-60, -10), st.integers(0, 2**31), st.sampled_from([0.01, 0.1, 1.0]))
def test_quantizers_equal_reference(rows, cols, scan, dq, qp, seed, scale):
    w = (np.random.default_rng(seed).standard_normal(rows * cols) * scale).astype(np.float32)
    ours = quantize(w, rows, cols, qp=qp, qp_density=2, dq=dq, scan_order=scan)
    if dq:
        theirs = ref_quant.quantize_dependent(w, qp, 2, scan, rows, cols)
    else:
        theirs = ref_quant.quantize_uniform(w, qp, 2)
    np.testing.assert_array_equal(ours, np.asarray(theirs).ravel())
    np.testing.assert_array_equal(dequantize(ours, qp, 2), ref_quant.dequantize(ours, qp, 2))
    assert float(step_size(qp, 2)) == ref_quant.step_size(qp, 2) == _core.step_size(qp, 2)
