"""NDU payload coding: all tensors of one NDU in one CABAC stream, terminated once at the end.

Per tensor, in stream order (NNCodec 2.1.3 ``CABACEncoder`` / ``CABACDecoder``):

1. ``qp_value`` iae(6 + qp_density), bypass (FLOAT and BLOCK payloads only);
2. profile 1, if rows > 1, cols > 1 and codebook_size != 1: the HDSP flag (bypass, only with a
   parent node id), ``row_skip_enabled_flag`` (bypass) and, if set, one flag per row (row-skip
   context);
3. the init-set signalling: per listed context a flag (shift-flag context) and, if 1, uae(3) of
   set - 1 (:func:`contexts.signalled_contexts`);
4. the levels in scan order; at every block-row start the range is set to 256, the contexts are
   reset to their signalled sets and the neighbour to 0 (the DQ state carries over). The first
   block row gets the range reset too if the tensor has more than one block row (NNCodec 0.3.1:
   whenever the scan is a block scan).

Levels are handled as reconstruction multipliers k; with dependent quantization the coded index
is q with k = 2q - sgn(q)*(state & 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnr.entropy.spec import EntryPoint, TensorCoding, TensorSpec

from . import contexts as C
from .engine import Decoder, Encoder
from .tables import DQ_NEXT_STATE

__all__ = ["decode_payload", "encode_payload", "decode_payload_detailed", "DecodedTensor",
           "scan_positions"]


# ---------------------------------------------------------------------------------------------
# Tensor geometry

@dataclass
class _Plan:
    rows: int
    cols: int
    scan: int                  # effective scan order
    block_rows: int            # getNumOfBlockRows(): 0 for raster scan
    segments: list             # (block_row, row, [flat positions]) in scan order
    n_gtx: int
    cb_size: int               # codebook size as seen by the binarization (0: none)
    cb_offset: int
    flags_present: bool        # HDSP / row-skip flags in the stream


def effective_scan_order(spec: TensorSpec) -> int:
    return 0 if spec.rows < 2 or spec.cols < 2 else spec.scan_order


def _segments(rows: int, cols: int, scan: int) -> list:
    bh, bw = (rows, cols) if scan == 0 else (4 << scan, 4 << scan)
    out = []
    for br, y0 in enumerate(range(0, rows, max(bh, 1))):
        for x0 in range(0, cols, max(bw, 1)):
            for y in range(y0, min(y0 + bh, rows)):
                out.append((br, y, [y * cols + x for x in range(x0, min(x0 + bw, cols))]))
    return out


def scan_positions(rows: int, cols: int, scan_order: int) -> list[int]:
    """Flat C-order positions in coding order (raster, or square blocks of 4 << scan_order)."""
    if rows < 2 or cols < 2:
        scan_order = 0
    return [p for _, _, seg in _segments(rows, cols, scan_order) for p in seg]


def _plan(spec: TensorSpec) -> _Plan:
    if spec.legacy_v03 and spec.profile != 0:
        raise ValueError("legacy_v03 payloads are profile 0")
    if spec.profile not in (0, 1):
        raise ValueError("profile must be 0 or 1")
    scan = effective_scan_order(spec)
    if not 0 <= scan <= 4:
        raise ValueError("scan_order must be 0..4")
    block_rows = 0 if scan == 0 else -(-spec.rows // (4 << scan))
    cb = (spec.codebook_size, spec.codebook_zero_offset) if spec.profile == 1 else (0, 0)
    if cb[0] < 0 or (cb[0] > 0 and not 0 <= cb[1] < cb[0]):
        raise ValueError("codebook_zero_offset out of range")
    flags = spec.profile == 1 and spec.rows > 1 and spec.cols > 1 and cb[0] != 1
    n_gtx = spec.cabac_unary_length
    if n_gtx < 1:
        raise ValueError("cabac_unary_length must be >= 1")
    return _Plan(spec.rows, spec.cols, scan, block_rows, _segments(spec.rows, spec.cols, scan),
                 n_gtx, cb[0], cb[1], flags)


def _first_row_reset(spec: TensorSpec, plan: _Plan) -> bool:
    if plan.scan == 0:
        return False
    return spec.legacy_v03 or plan.block_rows > 1


def _base(spec: TensorSpec) -> np.ndarray | None:
    if spec.tca_base is None or spec.profile != 1:
        return None
    base = np.asarray(spec.tca_base).reshape(-1)
    if base.size != spec.size:
        raise ValueError("tca_base size differs from the tensor size")
    return base


def _history(spec: TensorSpec) -> np.ndarray | None:
    if spec.hdsp_history is None:
        return None
    hist = np.asarray(spec.hdsp_history).reshape(-1)
    if hist.size != spec.size:
        raise ValueError("hdsp_history size differs from the tensor size")
    return hist


# ---------------------------------------------------------------------------------------------
# Binarization of one index (xEncWeight / decodeWeightVal)

def _max_abs(plan: _Plan, negative: bool) -> int:
    """Largest |index| allowed in this sign direction; -1 = unbounded."""
    if plan.cb_size == 0:
        return -1
    return plan.cb_offset if negative else plan.cb_size - 1 - plan.cb_offset


def _sign_inferred(plan: _Plan) -> bool:
    return plan.cb_size > 0 and (plan.cb_offset == 0 or plan.cb_offset == plan.cb_size - 1)


def _prefix_limit(legacy: bool) -> int:
    return 32 if legacy else 31  # 2.x decoders stop after 31 prefix ones (no terminating 0)


def _code_level(put, q: int, state: int, prev: int, base: int, hdsp_here: bool, plan: _Plan,
                legacy: bool, bypass=None) -> None:
    """Drive ``put(ctx_index, bin)`` with the bins of index q (encoder and pseudo-encoder).
    ``bypass(value, nbits)`` receives the remainder suffix (None: not coded, as in the
    pseudo-encoder)."""
    n_gtx = plan.n_gtx
    put(C.sig_ctx(state, prev, base, hdsp_here), 1 if q else 0)
    if q == 0:
        return
    negative = q < 0
    if _sign_inferred(plan):
        if negative != (plan.cb_offset != 0):
            raise ValueError("index sign not allowed by the codebook")
    else:
        put(C.sign_ctx(prev, base), 1 if negative else 0)
    a, max_abs = abs(q), _max_abs(plan, negative)
    if max_abs != -1 and a > max_abs:
        raise ValueError("index outside the codebook")
    if max_abs == 1:
        return
    v, n = 1, 0
    while True:                                   # greater-than flags: |q| > n + 1
        flag = 1 if a > v else 0
        put(C.gtx_ctx(n_gtx, n, negative, base), flag)
        if not flag:
            return
        v += 1
        n += 1
        if n >= n_gtx or (max_abs != -1 and max_abs <= v):
            break
    if max_abs != -1 and max_abs <= v:            # value inferred = max_abs
        return
    r, rem_max = a - v, (max_abs - v if max_abs != -1 else -1)
    j, lo, nbits = 0, 0, 0                        # Exp-Golomb-0, context-coded unary prefix
    while True:
        bit = 1 if r >= lo + (1 << nbits) else 0
        put(C.rem_prefix(n_gtx) + j, bit)
        if not bit:
            break
        lo += 1 << nbits
        nbits += 1
        j += 1
        if rem_max != -1 and rem_max < lo + (1 << nbits):
            break                                 # truncated by the codebook: no terminating 0
        if j == _prefix_limit(legacy):            # unreachable for int32 levels
            if legacy:
                raise ValueError("remainder too large")
            break
    if bypass is not None:
        bypass(r - lo, nbits)


def _decode_level(dec: Decoder, ctxs: list, state: int, prev: int, base: int, hdsp_here: bool,
                  plan: _Plan, legacy: bool) -> int:
    n_gtx = plan.n_gtx
    if not dec.decode_bin(ctxs[C.sig_ctx(state, prev, base, hdsp_here)]):
        return 0
    if _sign_inferred(plan):
        negative = plan.cb_offset != 0
    else:
        negative = bool(dec.decode_bin(ctxs[C.sign_ctx(prev, base)]))
    max_abs = _max_abs(plan, negative)
    v = 1
    if max_abs == -1 or max_abs > 1:
        n = 0
        while True:
            flag = dec.decode_bin(ctxs[C.gtx_ctx(n_gtx, n, negative, base)])
            v += flag
            n += 1
            if not flag or n >= n_gtx or (max_abs != -1 and max_abs <= v):
                break
        if flag and (max_abs == -1 or max_abs > v):
            rem_max = max_abs - v if max_abs != -1 else -1
            j, lo, nbits = 0, 0, 0
            while True:
                if not dec.decode_bin(ctxs[C.rem_prefix(n_gtx) + j]):
                    break
                lo += 1 << nbits
                nbits += 1
                j += 1
                if (rem_max != -1 and rem_max < lo + (1 << nbits)) or j == _prefix_limit(legacy):
                    if legacy and j == 32:
                        raise ValueError("remainder prefix too long")
                    break
            v += lo + dec.decode_bypass_bits(nbits)
    return -v if negative else v


# ---------------------------------------------------------------------------------------------
# DQ mapping

def _k_from_q(q: int, state: int) -> int:
    if q == 0:
        return 0
    return 2 * q - (state & 1) * (1 if q > 0 else -1)


def _q_from_k(k: int, state: int, dq: bool) -> int:
    if not dq or k == 0:
        return k
    if (k & 1) != (state & 1):
        raise ValueError(f"level k={k} is not representable in DQ state {state}")
    return (k + (state & 1) * (1 if k > 0 else -1)) // 2


# ---------------------------------------------------------------------------------------------
# Decoder

@dataclass
class DecodedTensor:
    levels: np.ndarray                 # int32 k, shape (rows*cols,)
    coding: TensorCoding
    level_start: int                   # bit position P after the init signalling (EP base)
    entry_points: list[EntryPoint]     # absolute, one per block row after the first


def _read_signalling(dec: Decoder, ctxs: list, spec: TensorSpec, plan: _Plan, tca: bool,
                     hdsp: bool) -> None:
    flag_ctx = ctxs[C.shift_flag_ctx(plan.n_gtx)]
    for idx, present in C.signalled_contexts(plan.n_gtx, spec.dq, tca, hdsp, plan.cb_size,
                                             plan.cb_offset, spec.legacy_v03):
        choice = 0
        if present and dec.decode_bin(flag_ctx):
            choice = 1 + dec.decode_bypass_bits(3)
        ctxs[idx].init(choice)


def _decode_tensor(dec: Decoder, spec: TensorSpec) -> DecodedTensor:
    plan = _plan(spec)
    coding = TensorCoding()
    if spec.has_qp:
        bits = 6 + spec.qp_density
        v = dec.decode_bypass_bits(bits)
        coding.qp = v - (1 << bits) if v >> (bits - 1) else v
    ctxs = [C.ContextModel() for _ in range(C.num_contexts(plan.n_gtx))]
    if plan.flags_present:
        if spec.parent_node_id_present:
            coding.hdsp = bool(dec.decode_bypass())
        if dec.decode_bypass():
            rs = ctxs[C.row_skip_ctx(plan.n_gtx)]
            coding.row_skip = np.array([dec.decode_bin(rs) for _ in range(spec.rows)], np.uint8)
    base, hist = _base(spec), _history(spec)
    _read_signalling(dec, ctxs, spec, plan, base is not None, coding.hdsp)
    coding.init_sets = np.array([c.init_idx for c in ctxs], np.uint8)

    level_start = dec.shifts
    if _first_row_reset(spec, plan):
        dec.entry_point_start()
    levels = np.zeros(spec.size, np.int32)
    eps: list[EntryPoint] = []
    state, prev, cur_br = 0, 0, 0
    codes_nothing = plan.cb_size == 1
    for br, row, seg in plan.segments:
        if br != cur_br:                               # entry point
            cur_br = br
            for c in ctxs:
                c.reset()
            prev = 0
            dec.entry_point_start()
            eps.append(EntryPoint(dec.shifts, dec.offset, state))
        if coding.row_skip is not None and coding.row_skip[row]:
            if spec.dq:
                for _ in range(spec.cols):             # layerWidth times, not len(seg)
                    state = DQ_NEXT_STATE[state][0]
            continue
        for pos in seg:
            q = 0
            if not codes_nothing:
                b = int(base[pos]) if base is not None else 0
                here = coding.hdsp and hist is not None and hist[pos] == 1
                q = _decode_level(dec, ctxs, state, prev, b, here, plan, spec.legacy_v03)
            prev = q
            if spec.dq:
                levels[pos] = _k_from_q(q, state)
                state = DQ_NEXT_STATE[state][q & 1]
            else:
                levels[pos] = q
    return DecodedTensor(levels, coding, level_start, eps)


def decode_payload_detailed(data: bytes, specs: list[TensorSpec]
                            ) -> tuple[list[DecodedTensor], int]:
    """Like :func:`decode_payload`, with each tensor's level-data start position (the base of
    NNCodec's first entry-point delta) and the entry points the decoder passed."""
    dec = Decoder(data)
    out = [_decode_tensor(dec, spec) for spec in specs]
    if not dec.decode_terminate():
        raise ValueError("terminating bin not received")
    return out, dec.bytes_consumed()


def decode_payload(data: bytes, specs: list[TensorSpec]
                   ) -> tuple[list[np.ndarray], list[TensorCoding], int]:
    """Decode one NDU payload; returns the k multipliers and the coding choices per tensor and
    the number of payload bytes consumed (incl. the byte with the stop bit)."""
    tensors, consumed = decode_payload_detailed(data, specs)
    return [t.levels for t in tensors], [t.coding for t in tensors], consumed


# ---------------------------------------------------------------------------------------------
# Encoder

def _walk_q(spec: TensorSpec, plan: _Plan, levels: np.ndarray, row_skip):
    """Yield (block_row, pos, q, state) over the coded positions, with q derived from k along
    the decoder's state path (skipped row segments advance the state layerWidth times)."""
    state = 0
    for br, row, seg in plan.segments:
        if row_skip is not None and row_skip[row]:
            if spec.dq:
                for _ in range(spec.cols):
                    state = DQ_NEXT_STATE[state][0]
            yield br, None, 0, state
            continue
        for pos in seg:
            q = _q_from_k(int(levels[pos]), state, spec.dq)
            yield br, pos, q, state
            if spec.dq:
                state = DQ_NEXT_STATE[state][q & 1]


def _choose_init_sets(spec: TensorSpec, plan: _Plan, levels: np.ndarray, row_skip, base, hist,
                      hdsp: bool) -> list[C.InitSetEstimator]:
    """NNCodec's param_opt pseudo-encoding pass. Quirks kept on purpose: it binarizes the
    multipliers k (not q) with the general binarization (no codebook truncation), the neighbour
    is k, nothing is estimated for bypass bins, and in 2.x the neighbour is NOT reset at block
    rows (0.3.1 resets it)."""
    est = [C.InitSetEstimator() for _ in range(C.num_contexts(plan.n_gtx))]
    general = _Plan(plan.rows, plan.cols, plan.scan, plan.block_rows, plan.segments,
                    plan.n_gtx, 0, 0, plan.flags_present)
    prev, cur_br = 0, 0
    for br, pos, q, state in _walk_q(spec, plan, levels, row_skip):
        if br != cur_br:
            cur_br = br
            for e in est:
                e.reset()
            if spec.legacy_v03:
                prev = 0
        if pos is None:
            continue
        k = int(levels[pos])
        b = int(base[pos]) if base is not None else 0
        here = hdsp and hist is not None and hist[pos] == 1
        _code_level(lambda i, bin_: est[i].add(bin_), k, state, prev, b, here, general,
                    spec.legacy_v03)
        prev = k
    return est


def _encode_tensor(enc: Encoder, k: np.ndarray, spec: TensorSpec, coding: TensorCoding,
                   param_opt: bool) -> None:
    plan = _plan(spec)
    levels = np.asarray(k).reshape(-1).astype(np.int64)
    if levels.size != spec.size:
        raise ValueError("levels size differs from rows*cols")
    if spec.has_qp:
        bits = 6 + spec.qp_density
        if not -(1 << (bits - 1)) <= coding.qp < (1 << (bits - 1)):
            raise ValueError("qp does not fit iae(6 + qp_density)")
        enc.encode_bypass_bits(coding.qp & ((1 << bits) - 1), bits)
    ctxs = [C.ContextModel() for _ in range(C.num_contexts(plan.n_gtx))]
    hdsp, row_skip = bool(coding.hdsp), coding.row_skip
    if plan.flags_present:
        if spec.parent_node_id_present:
            enc.encode_bypass(1 if hdsp else 0)
        elif hdsp:
            raise ValueError("HDSP needs parent_node_id_present")
        enc.encode_bypass(0 if row_skip is None else 1)
        if row_skip is not None:
            row_skip = np.asarray(row_skip).reshape(-1)
            if row_skip.size != spec.rows:
                raise ValueError("row_skip needs one flag per row")
            rs = ctxs[C.row_skip_ctx(plan.n_gtx)]
            for flag in row_skip:
                enc.encode_bin(rs, 1 if flag else 0)
            grid = levels.reshape(spec.rows, spec.cols)
            if np.any(grid[row_skip.astype(bool)]):
                raise ValueError("a skipped row has nonzero levels")
    elif hdsp or row_skip is not None:
        raise ValueError("HDSP / row skip flags are not present for this tensor")
    base, hist = _base(spec), _history(spec)

    # init-set choice and signalling
    use_opt = param_opt and (plan.cb_size != 1 or spec.profile == 0)
    est = _choose_init_sets(spec, plan, levels, row_skip, base, hist, hdsp) if use_opt \
        else None
    flag_ctx = ctxs[C.shift_flag_ctx(plan.n_gtx)]
    for idx, present in C.signalled_contexts(plan.n_gtx, spec.dq, base is not None, hdsp,
                                             plan.cb_size, plan.cb_offset, spec.legacy_v03):
        choice = est[idx].best() if (present and est is not None) else 0
        if present:
            enc.encode_bin(flag_ctx, 1 if choice else 0)
            if choice:
                enc.encode_bypass_bits(choice - 1, 3)
        ctxs[idx].init(choice)

    # levels
    if _first_row_reset(spec, plan):
        enc.entry_point_start()
    prev, cur_br = 0, 0
    put = lambda i, bin_: enc.encode_bin(ctxs[i], bin_)  # noqa: E731
    for br, pos, q, state in _walk_q(spec, plan, levels, row_skip):
        if br != cur_br:
            cur_br = br
            for c in ctxs:
                c.reset()
            prev = 0
            enc.entry_point_start()
        if pos is None:
            continue
        if plan.cb_size != 1:
            b = int(base[pos]) if base is not None else 0
            here = hdsp and hist is not None and hist[pos] == 1
            _code_level(put, q, state, prev, b, here, plan, spec.legacy_v03,
                        enc.encode_bypass_bits)
        elif q != 0:
            raise ValueError("a codebook of size 1 only holds index 0")
        prev = q


def encode_payload(levels: list[np.ndarray], specs: list[TensorSpec], codings: list[TensorCoding],
                   param_opt: bool = True) -> tuple[bytes, list[list[EntryPoint]]]:
    """Encode the k multipliers of all tensors of one NDU into one CABAC payload. Returns the
    payload and, per tensor, the absolute entry points, found as NNCodec does: by decoding the
    payload and recording the decoder state at every block-row start after the first."""
    if not len(levels) == len(specs) == len(codings):
        raise ValueError("levels, specs and codings differ in length")
    enc = Encoder()
    for k, spec, coding in zip(levels, specs, codings):
        _encode_tensor(enc, k, spec, coding, param_opt)
    payload = enc.finish()
    decoded, consumed = decode_payload_detailed(payload, specs)
    assert consumed == len(payload)
    for k, t in zip(levels, decoded):
        assert np.array_equal(np.asarray(k).reshape(-1), t.levels), "oracle self-check failed"
    return payload, [t.entry_points for t in decoded]
