"""The oracle decodes NDU payloads of NNCodec conformance vectors to NNCodec's own output.

The NDU header is located with the small, self-contained parser below (enough NNR high-level
syntax for non-incremental NNCodec streams: NNCodec notes §4.2-4.11); it does not depend on
``nnr.bitstream``. Besides the decoded tensors, the test checks that the payload length the
oracle consumes equals the unit's remaining bytes and that the entry points the oracle records
equal the ones NNCodec wrote into the header.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nnr.entropy.spec import TensorSpec

from .quant import dequantize
from .tensor_coder import decode_payload_detailed

NDU, STR, MPS = 5, 0, 1
PT_INT, PT_FLOAT, PT_RAW, PT_BLOCK = 0, 1, 2, 3
CPT_DC, CPT_LS, CPT_BN, CPT_BI = 1, 2, 4, 8


class _Bits:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos * 8

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def i(self, n: int) -> int:
        v = self.u(n)
        return v - (1 << n) if v >> (n - 1) else v

    def ue(self, k: int) -> int:
        x = 0
        while self.u(1) == 0:
            x += 1 << k
            k += 1
        return x + self.u(k)

    def ie(self, k: int) -> int:
        v = self.ue(k)
        return (v + 1) // 2 if v & 1 else -(v // 2)

    def st(self) -> str:
        assert self.pos % 8 == 0
        end = self.data.index(0, self.pos // 8)
        s = self.data[self.pos // 8:end].decode()
        self.pos = (end + 1) * 8
        return s

    def align(self) -> None:
        assert self.u(1) == 1
        while self.pos % 8:
            assert self.u(1) == 0


def _codebook(r: _Bits) -> tuple[list[int], int]:
    egk = r.u(4)
    size = r.ue(2)
    zero = (size >> 1) + r.ie(2)
    cb = [0] * size
    cb[zero] = r.ie(7)
    for j in range(zero - 1, -1, -1):
        cb[j] = cb[j + 1] - r.ue(egk) - 1
    for j in range(zero + 1, size):
        cb[j] = cb[j - 1] + r.ue(egk) + 1
    return cb, zero


@dataclass
class _Ndu:
    payload: bytes
    names: list[str]                     # in payload order
    specs: list[TensorSpec]
    kinds: list[str]                     # "int" | "uniform" | "codebook"
    codebook: list[int] = field(default_factory=list)
    eps: list[tuple[int, int, int]] = field(default_factory=list)  # (delta, offset, state)
    tca: bool = False                    # temporal_context_modeling_flag (incremental streams)


def _parse_ndu(data: bytes, start: int, end: int, header_pos: int, profile: int, qd: int,
               parent_sig: bool, legacy: bool) -> _Ndu:
    r = _Bits(data)
    r.pos = header_pos
    ptype, multiple, ddf, inputs = r.u(5), r.u(1), r.u(1), r.u(1)
    assert ptype != PT_RAW and inputs == 1
    if multiple:
        count = r.ue(7) + 2
        r.align()
        names = [r.st() for _ in range(count)]
    else:
        names = [r.st()]
    parent = tca = False
    if profile == 1:
        node_id = r.u(1)
        if node_id:
            r.ue(1), r.ue(5), r.ue(4)
        if parent_sig:
            parent = bool(r.u(1))
            if parent:
                id_type, tca = r.u(2), bool(r.u(1))
                assert id_type == 0
                r.ue(1)
                if not node_id:
                    r.ue(5), r.ue(4)
    cb_present = r.u(1) if ptype in (PT_FLOAT, PT_BLOCK) else 0
    cb, cb_zero = _codebook(r) if cb_present else ([], 0)
    dq = r.u(1)
    if ddf:
        r.u(7)
    tdf, culf, cpt = r.u(1), r.u(1), r.u(4)
    assert tdf and not cpt & CPT_DC
    dims = [r.ue(7) for _ in range(r.ue(1))]
    n_minus1 = r.u(8) if culf else 9
    scan = 0
    eps = []
    if len(dims) > 1:
        if profile == 1:
            r.ue(1)
        scan = r.u(4)
        if scan:
            delta = 0
            for j in range(((dims[0] + (4 << scan) - 1) >> (2 + scan)) - 1):
                off = r.u(8)
                state = r.u(3) if dq else 0
                delta = r.ue(11) if j == 0 else delta + r.ie(7)
                eps.append((delta, off, state))
    r.align()
    rows, cols = dims[0], int(np.prod(dims[1:])) if len(dims) > 1 else 1
    if ptype == PT_BLOCK:  # payload order: LS, BI, BN (4), weight; names: W, LS, BN (4), BI
        order = ([1] if cpt & CPT_LS else []) + ([len(names) - 1] if cpt & CPT_BI else [])
        first_bn = 1 + (1 if cpt & CPT_LS else 0)
        order += list(range(first_bn, first_bn + 4)) if cpt & CPT_BN else []
        names = [names[i] for i in order] + [names[0]]
        shapes = [(rows, 1)] * (len(names) - 1) + [(rows, cols)]
    else:
        shapes = [(rows, cols)]
    specs, kinds = [], []
    for i, (rr, cc) in enumerate(shapes):
        is_w = i == len(shapes) - 1
        use_cb = bool(cb_present) and is_w
        specs.append(TensorSpec(
            rows=rr, cols=cc, scan_order=scan, dq=bool(dq) and ptype != PT_INT,
            has_qp=ptype != PT_INT, qp_density=qd, profile=profile,
            parent_node_id_present=parent, cabac_unary_length=n_minus1 + 1,
            codebook_size=len(cb) if use_cb else 0, codebook_zero_offset=cb_zero if use_cb else 0,
            legacy_v03=legacy))
        kinds.append("int" if ptype == PT_INT else "codebook" if use_cb else "uniform")
    return _Ndu(data[r.pos // 8:end], names, specs, kinds, cb, eps, tca)


def parse_ndus(data: bytes, legacy: bool) -> list[_Ndu]:
    """All NDUs of one NNCodec stream, with their payload bytes and tensor specs."""
    out, pos, profile, qd, parent_sig = [], 0, 0, 2, False
    while pos < len(data):
        r = _Bits(data, pos)
        size = r.u(31) if r.u(1) else r.u(15)
        utype = r.u(6)
        r.u(1)
        assert r.u(1) == 0
        if utype == STR:
            profile = r.u(8)
        elif utype == MPS:
            r.u(5)
            qmf = r.u(3)
            r.u(1)
            if profile == 1:
                base_id, vsp, mtpm, parent_sig = r.u(1), r.u(1), r.u(1), bool(r.u(1))
                r.u(3)
                assert not (base_id or vsp or mtpm)
            else:
                r.u(7)
            if qmf & 3:
                qd = r.u(3)
                assert r.i(13) == 0
        elif utype == NDU:
            out.append(_parse_ndu(data, pos, pos + size, r.pos, profile, qd, parent_sig, legacy))
        pos += size
    return out


def _expected_k_check(ndu: _Ndu, levels: list[np.ndarray], qps: list[int], decoded: dict) -> None:
    for name, spec, kind, k, qp in zip(ndu.names, ndu.specs, ndu.kinds, levels, qps):
        want = decoded[name]
        if kind == "int":
            got = k.reshape(want.shape)
            assert want.dtype == np.int32
        elif kind == "codebook":
            got = (np.array(ndu.codebook, np.int64)[k + spec.codebook_zero_offset]
                   * step_size_f64(qp, spec.qp_density)).reshape(want.shape)
            assert want.dtype == np.float64
        else:
            got = dequantize(k, qp, spec.qp_density).reshape(want.shape)
            assert want.dtype == np.float32
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), name


def step_size_f64(qp: int, qd: int) -> float:
    """NNCodec's Python step size (double), used for codebook tensors."""
    k = 1 << qd
    return (k + (qp & (k - 1))) * 2.0 ** ((qp >> qd) - qd)


def check_vector(vectors_dir: Path, vid: str) -> int:
    manifest = json.loads((vectors_dir / "manifest.json").read_text())
    vec = next(v for v in manifest["vectors"] if v["id"] == vid)
    legacy = vec["producer"] == "nncodec 0.3.1"
    decoded = dict(np.load(vectors_dir / vec["decoded"]))
    data = (vectors_dir / vec["streams"][0]).read_bytes()
    n = 0
    for ndu in parse_ndus(data, legacy):
        tensors, consumed = decode_payload_detailed(ndu.payload, ndu.specs)
        assert consumed == len(ndu.payload)
        _expected_k_check(ndu, [t.levels for t in tensors], [t.coding.qp for t in tensors],
                          decoded)
        recorded = [(ep.bit_position, ep.cabac_offset, ep.dq_state)
                    for t in tensors for ep in t.entry_points]
        if ndu.eps:   # NNCodec writes P relative to the level start / the previous entry point
            start = tensors[-1].level_start
            absolute = []
            for delta, off, state in ndu.eps:
                start += delta
                absolute.append((start, off, state))
            assert recorded == absolute
        else:
            assert recorded == []
        n += len(tensors)
    assert n == len(decoded)
    return n


SMALL_VECTORS = [
    "p1_int_1d_synth",                   # NNR_PT_INT, 1-D
    "p1_degenerate_shapes_scan0_synth",  # [N,1], [1,N], [N,1,1,1], DQ
    "p1_int_rowskip_synth",              # row skipping with DQ, INT and FLOAT
    "p1_cb1_scan1_rowskip_synth",        # profile-1 codebooks, 8x8 blocks, row skip, EPs
    "p1_blk_bnf_scan1_synth",            # BLOCK NDU, DQ, EPs
    "p1_3d_5d_scan1_synth",              # 3-D/5-D, single block row (no reset) and EPs
    "p1_zerorows_rs1_dq0_scan2_synth",   # row skip with 16x16 blocks
    "p1_cabac_unary4_synth",             # cabac_unary_length_minus1 = 4
    "p1_scan1_onerow_dq1_minilm",        # 2.1.3: no range reset for one block row
    "p0_int_synth",                      # 0.3.1, INT
    "p0_cb2_dq1_mixed_synth",            # 0.3.1, codebook (general binarization) + DQ
    "p0_blk_bnf_ls_synth",               # 0.3.1, BLOCK NDUs
    "p0_scan2_onerow_dq1_minilm",        # 0.3.1: range reset even for one block row
]


@pytest.mark.parametrize("vid", SMALL_VECTORS)
def test_vector_payloads_decode_to_nncodec_output(vectors_dir: Path, vid: str) -> None:
    if not (vectors_dir / "manifest.json").exists():
        pytest.skip("conformance vectors not present")
    assert check_vector(vectors_dir, vid) > 0
