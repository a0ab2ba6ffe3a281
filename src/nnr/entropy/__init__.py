"""Python face of DeepCABAC: one call per NDU payload, numpy in, bytes or arrays out."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from nnr.entropy.spec import EntryPoint, TensorCoding, TensorSpec

__all__ = ["EntryPoint", "TensorCoding", "TensorSpec", "decode_payload", "encode_payload"]


def _core():
    from nnr import _core as core  # imported lazily so the syntax layer works without it
    return core


def _param_tuple(s: TensorSpec) -> tuple:
    base = None if s.tca_base is None else np.ascontiguousarray(s.tca_base, dtype=np.int32).ravel()
    hist = None if s.hdsp_history is None else np.ascontiguousarray(s.hdsp_history, dtype=np.uint8).ravel()
    return (s.rows, s.cols, s.scan_order, bool(s.dq), bool(s.has_qp), 6 + s.qp_density, s.profile,
            bool(s.parent_node_id_present), s.cabac_unary_length, s.codebook_size,
            s.codebook_zero_offset, bool(s.legacy_v03), base, hist, int(s.init_estimate_limit),
            [(int(d), int(o), int(q)) for d, o, q in s.entry_point_deltas], int(s.threads),
            s.init_estimate == "nncodec")


def _coding(side: tuple) -> tuple[TensorCoding, int, list[EntryPoint]]:
    qp, hdsp, rs_enabled, row_skip, init_sets, level_start, eps = side
    coding = TensorCoding(qp=int(qp), hdsp=bool(hdsp),
                          row_skip=np.frombuffer(row_skip, np.uint8).copy() if rs_enabled else None,
                          init_sets=np.frombuffer(init_sets, np.uint8).copy())
    return coding, int(level_start), [EntryPoint(int(b), int(o), int(s)) for b, o, s in eps]


def decode_payload(data: bytes | memoryview, specs: Sequence[TensorSpec]
                   ) -> tuple[list[np.ndarray], list[TensorCoding], list[tuple[int, list[EntryPoint]]], int]:
    """Decode one NDU payload: levels k per tensor, what was coded, (level start bit, entry
    points) per tensor, and the number of bytes consumed."""
    buf = np.frombuffer(data, dtype=np.uint8)
    levels, sides, used = _core().decode_payload(buf, [_param_tuple(s) for s in specs])
    codings, eps = [], []
    for side in sides:
        coding, start, points = _coding(side)
        codings.append(coding)
        eps.append((start, points))
    return list(levels), codings, eps, int(used)


def encode_payload(levels: Sequence[np.ndarray], specs: Sequence[TensorSpec],
                   codings: Sequence[TensorCoding], param_opt: bool = True
                   ) -> tuple[bytes, list[TensorCoding]]:
    """Encode the multipliers k of each tensor into one NDU payload."""
    lv = [np.ascontiguousarray(k, dtype=np.int32).ravel() for k in levels]
    sides_in = [(c.qp, bool(c.hdsp), None if c.row_skip is None
                 else np.ascontiguousarray(c.row_skip, dtype=np.uint8)) for c in codings]
    payload, sides = _core().encode_payload([_param_tuple(s) for s in specs], lv, sides_in,
                                            bool(param_opt))
    return bytes(payload), [_coding(s)[0] for s in sides]
