"""Deterministic generator of the malformed-stream corpus in ``tests/malformed/corpus/``.

Hostile streams are derived from real ones (small conformance vectors and streams nnr
encodes) and crafted field by field:

* ``trunc_*``     a stream cut inside the size field, header or payload of every unit, and
                  exactly at every unit boundary (a complete, shorter stream);
* ``flip_*``      one or several bit flips in unit headers and in payloads;
* ``size_*``      wrong ``nnr_unit_size``: one too small / large, zero, below the header,
                  huge 2- and 4-byte sizes, trailing bytes; all units re-framed with the
                  4-byte form (valid);
* ``type_*``      reserved / unknown unit types 7..63 in place of a real unit;
* ``order_*``     no STR first, two STR, no MPS, NDU before MPS, duplicated MPS, nested AGG;
* ``hdr_*``       reserved values in NDU headers (payload type 4..31, scan_order 5..15,
                  parent_node_id_type 3), codebooks (huge size, zero offset outside), names
                  without NUL or not UTF-8, id lists and entry-point counts beyond the unit;
* ``dims_*``      absurd tensor dimensions: 2^31 and 2^32 elements, zero dims, no dims, more
                  than 64 dims, a 0 next to a 2^33;
* ``res_*``       small streams declaring huge tensors, including the cheap cases (one-entry
                  codebook, row skipping), which must give ResourceLimitError;
* ``unsup_*``     reserved general_profile_idc 2..255 and tools nnr does not implement;
* ``names_*``     valid streams with tensor names that are hostile to file writers
                  (``../../evil``, ``/abs/path``, ``file``, ``allow_pickle``, empty).

``manifest.json`` gives per file the family, what was done and the expected outcome:
``"ok"`` (decodes to a well-formed result), ``"error"`` (a BitstreamError), a class name of
:mod:`nnr.errors` (that error or a subclass), ``"unsupported"`` (UnsupportedFeatureError), or
``"any"`` (a BitstreamError or UnsupportedFeatureError, or a well-formed result).

    PYTHONPATH=src python tests/malformed/make_corpus.py [--out DIR] [--seeds DIR]

``--seeds DIR`` also writes the valid source streams there (seeds for the atheris harness).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VECTORS = REPO / "tests" / "vectors"

#: Small conformance vectors the mutations start from.
VECTOR_SOURCES = [
    "p1_int_1d_synth", "p1_degenerate_shapes_scan0_synth", "p1_pre_signalling_skip_synth",
    "p1_int_rowskip_synth", "p1_cb1_scan1_rowskip_synth", "p0_int_synth",
    "p1_blk_bnf_scan1_synth", "p1_inc_tca1_hdsp0_rs0_codebook_synth.0",
]


# --- sources --------------------------------------------------------------------------------
def _encoded_sources() -> dict[str, bytes]:
    """Small streams nnr encodes with a spread of tools (deterministic inputs)."""
    import nnr
    rng = np.random.default_rng(15938)
    w = rng.normal(0, 0.05, (40, 24)).astype(np.float32)
    w[::3] = 0
    conv = rng.normal(0, 0.1, (16, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(0, 0.01, 40).astype(np.float32)
    out = {
        "enc_dq_scan2": nnr.encode({"w": w, "b": bias}, qp=-30, dq=True, scan_order=2,
                                   threads=1),
        "enc_codebook": nnr.encode({"w": w}, qp=-28, codebook="on", threads=1),
        "enc_rowskip": nnr.encode({"w": w}, qp=-30, dq=False, row_skip=True, threads=1),
        "enc_profile0": nnr.encode({"conv": conv, "b": bias[:16]}, profile=0, scan_order=1,
                                   threads=1),
        "enc_int": nnr.encode({"i": rng.integers(-50, 50, (12, 10)).astype(np.int32)},
                              threads=1),
        "enc_block": nnr.encode({"w": w, "b": bias}, blocks={"w": {"bias": "b"}}, threads=1),
        "enc_onecb": nnr.encode({"z": np.full((8, 8), 0.5, np.float32)}, codebook="on",
                                threads=1),
    }
    try:
        out["enc_raw"] = nnr.encode({"r": w[:4, :5]}, raw_float=True, threads=1)
    except (TypeError, nnr.ConfigError):
        pass
    return out


def sources() -> dict[str, bytes]:
    srcs = {name: (VECTORS / f"{name}.nnc").read_bytes() for name in VECTOR_SOURCES}
    srcs.update(_encoded_sources())
    return srcs


def _units(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, size, size-field bytes) of the top-level units, read from the framing only."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        flag = data[pos] >> 7
        field = 4 if flag else 2
        size = int.from_bytes(data[pos:pos + field], "big") & (0x7FFFFFFF if flag else 0x7FFF)
        if size < field or pos + size > len(data):
            break
        out.append((pos, size, field))
        pos += size
    return out


def _set_size(data: bytes, unit: tuple[int, int, int], size: int, field: int | None = None
              ) -> bytes:
    off, old, old_field = unit
    field = old_field if field is None else field
    raw = (size | (1 << 31)).to_bytes(4, "big") if field == 4 else size.to_bytes(2, "big")
    return data[:off] + raw + data[off + old_field:]


# --- mutation families ---------------------------------------------------------------------
Case = tuple[str, bytes, str, str]   # name, data, expected, description


def truncations(src: str, data: bytes) -> Iterator[Case]:
    units = _units(data)
    picked = {0, 1, 2, len(units) - 1}   # STR, MPS, the first and the last NDU
    for i, (off, size, field) in enumerate(units):
        if i not in picked:
            continue
        if i:
            yield (f"trunc_{src}_u{i}_boundary", data[:off], "ok",
                   f"cut before unit {i} (a complete shorter stream)")
        yield (f"trunc_{src}_u{i}_sizefield", data[:off + 1], "TruncatedBitstreamError",
               f"cut inside the size field of unit {i}")
        cuts = sorted({off + field, off + field + (size - field) // 2, off + size - 1})
        for c in cuts:
            if off < c < off + size:
                yield (f"trunc_{src}_u{i}_at{c - off}", data[:c], "TruncatedBitstreamError",
                       f"cut {c - off} bytes into unit {i} of {size}")


def bit_flips(src: str, data: bytes, rng: random.Random) -> Iterator[Case]:
    units = _units(data)
    for k in range(4):
        off, size, field = units[rng.randrange(len(units))]
        pos = off + rng.randrange(min(size, field + 6))
        bit = rng.randrange(8)
        yield (f"flip_{src}_hdr{k}", _flip(data, [(pos, bit)]), "any",
               f"bit {bit} of byte {pos} flipped (unit header)")
    for k in range(3):
        pos = rng.randrange(len(data))
        bit = rng.randrange(8)
        yield (f"flip_{src}_any{k}", _flip(data, [(pos, bit)]), "any",
               f"bit {bit} of byte {pos} flipped")
    for k in range(2):
        flips = [(rng.randrange(len(data)), rng.randrange(8)) for _ in range(rng.randint(2, 9))]
        yield (f"flip_{src}_multi{k}", _flip(data, flips), "any", f"bits flipped at {flips}")


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, bit in flips:
        b[pos] ^= 1 << bit
    return bytes(b)


def unit_sizes(src: str, data: bytes) -> Iterator[Case]:
    units = _units(data)
    seen_types: set[int] = set()
    for i, unit in enumerate(units):
        off, size, field = unit
        utype = data[off + field] >> 2
        if utype in seen_types:
            continue
        seen_types.add(utype)
        last = i == len(units) - 1
        yield (f"size_{src}_u{i}_minus1", _set_size(data, unit, size - 1), "error",
               f"nnr_unit_size of unit {i} one too small")
        if not last:
            yield (f"size_{src}_u{i}_plus1", _set_size(data, unit, size + 1), "error",
                   f"nnr_unit_size of unit {i} one too large")
        for bad in sorted({0, 1, field, field + 1 if utype in (1, 5) else 0}):
            yield (f"size_{src}_u{i}_is{bad}", _set_size(data, unit, bad), "error",
                   f"nnr_unit_size of unit {i} set to {bad}")
        yield (f"size_{src}_u{i}_huge2", _set_size(data, unit, 0x7FFF, 2), "error",
               f"unit {i} claims 32767 bytes (2-byte field)")
        yield (f"size_{src}_u{i}_huge4", _set_size(data, unit, 0x7FFFFFFF, 4), "error",
               f"unit {i} claims 2^31-1 bytes (4-byte field)")
    reframed = b"".join(_set_size(data[o:o + s], (0, s, f), s + 4 - f, 4)
                        for o, s, f in units)
    yield f"size_{src}_all4byte", reframed, "ok", "every unit re-framed with the 4-byte size form"
    yield (f"size_{src}_trailing", data + b"\x00", "TruncatedBitstreamError",
           "one byte after the last unit")


def unit_types(src: str, data: bytes, rng: random.Random) -> Iterator[Case]:
    units = _units(data)
    for t in (7, 63, rng.randrange(8, 63)):
        i = rng.randrange(len(units))
        off, _, field = units[i]
        b = bytearray(data)
        b[off + field] = (t << 2) | (b[off + field] & 3)
        yield (f"type_{src}_u{i}_t{t}", bytes(b), "NonConformingBitstreamError",
               f"unit {i} given the reserved nnr_unit_type {t}")


# --- crafted streams ------------------------------------------------------------------------
class Raw:
    """A bit writer that writes any value its descriptor can hold (no syntax validation)."""

    def __init__(self) -> None:
        from nnr.bitstream.bits import BitWriter
        self.w = BitWriter()

    def __getattr__(self, name):
        return getattr(self.w, name)

    def value(self) -> bytes:
        return self.w.getvalue()


def unit(utype: int, body: bytes, long: bool = False) -> bytes:
    """A unit: size field, nnr_unit_type, independently_decodable_flag 1, no partial counter."""
    head = bytes([(utype << 2) | 2])
    n = len(body) + 1 + (4 if long else 2)
    size = (n | (1 << 31)).to_bytes(4, "big") if long else n.to_bytes(2, "big")
    return size + head + body


def str_unit(profile: int = 1) -> bytes:
    return unit(0, bytes([profile]))


def mps_unit(profile: int = 1, parent: int = 0, qp_density: int = 2, qp: int = 0) -> bytes:
    r = Raw()
    r.u(1, 1)           # topology_carriage_flag
    r.u(4, 0)           # no performance maps
    r.u(3, 1)           # QSU
    r.u(1, 0)           # not indexed
    if profile == 1:
        r.u(1, 0)
        r.u(1, 0)
        r.u(1, 0)
        r.u(1, parent)
        r.u(1, 0)
        r.u(2, 0)
    else:
        r.u(7, 0)
    r.u(3, qp_density)
    r.i(13, qp)
    r.byte_alignment()
    return unit(1, r.value())


def ndu_unit(*, profile: int = 1, pt: int = 1, name: bytes = b"w\x00", dims=(4, 4),
             scan: int = 0, dq: int = 0, codebook=None, cpt: int = 0, dc=(1, 1),
             unary: int | None = None, parent_type: int | None = None, ids: int | None = None,
             entry_points: int = 0, payload: bytes = b"\x00\x00\x00\x80",
             dims_present: int = 1, dim_count: int | None = None, long: bool = False,
             ep_step: int = 0) -> bytes:
    """An NDU written field by field (profile 1: no node ids; ``parent_type`` needs an MPS
    with parent signalling). ``codebook`` is (egk, size, center_offset[, zero value,
    deltas...]). Entry points: offset 0, DQ state 0, bit offsets 0, then ``ep_step`` apart."""
    r = Raw()
    r.u(5, pt)
    r.u(1, 1 if ids is not None else 0)
    r.u(1, 0)
    r.u(1, 1)                                  # input_parameters_present_flag
    if ids is not None:                        # topology_elements_ids_list: count - 2
        r.ue(7, ids)
        r.byte_alignment()
    r.bytes(name)
    if profile == 1:
        r.u(1, 0)                              # node_id_present_flag
        if parent_type is not None:
            r.u(1, 1)
            r.u(2, parent_type)
            r.u(1, 0)
    if pt in (1, 3):
        r.u(1, codebook is not None)
        if codebook is not None:
            egk, size, center, *vals = codebook
            r.u(4, egk)
            r.ue(2, size)
            r.ie(2, center)
            for j, v in enumerate(vals):
                if j == 0:
                    r.ie(7, v)               # the value at CbZeroOffset
                else:
                    r.ue(egk, v)             # deltas
    if pt in (0, 1, 3):
        r.u(1, dq)
    r.u(1, dims_present)
    r.u(1, unary is not None)
    r.u(4, cpt)
    if cpt & 1:
        r.ue(3, dc[0])
        r.ue(3, dc[1])
    if dims_present:
        r.ue(1, len(dims) if dim_count is None else dim_count)
        for d in dims:
            r.ue(7, d)
    if unary is not None:
        r.u(8, unary)
    if len(dims) > 1:
        if profile == 1:
            r.ue(1, 0)
        r.u(4, scan)
        for j in range(entry_points):
            r.u(8, 0)
            if dq:
                r.u(3, 0)
            if j == 0:
                r.ue(11, 0)
            else:
                r.ie(7, ep_step)
    r.byte_alignment()
    return unit(5, r.value() + payload, long)


def _payload(rows: int, cols: int, qp_density: int = 2) -> bytes:
    """A valid FLOAT payload of levels 0..n-1 for ndu_unit's defaults (no DQ, unary length
    10, profile 1)."""
    from nnr.entropy import TensorCoding, TensorSpec, encode_payload
    spec = TensorSpec(rows=rows, cols=cols, qp_density=qp_density, cabac_unary_length=10)
    payload, _ = encode_payload([np.arange(rows * cols, dtype=np.int32)], [spec],
                                [TensorCoding(qp=0)])
    return payload


def head(profile: int = 1, parent: int = 0) -> bytes:
    return str_unit(profile) + mps_unit(profile, parent)


NC, TR, RL = "NonConformingBitstreamError", "TruncatedBitstreamError", "ResourceLimitError"
S, M = b"", b""   # set by crafted(): a profile-1 STR and MPS


def _framing() -> Iterator[Case]:
    yield "frame_empty", b"", TR, "an empty file"
    yield "frame_one_byte", b"\x00", TR, "one byte"
    yield "frame_size_only", b"\x00\x05", TR, "a size field and nothing"
    yield "frame_size0", b"\x00\x00" + S, NC, "nnr_unit_size 0"
    yield "frame_size3_str", b"\x00\x03\x02", NC, "STR of 3 bytes (no profile byte)"
    yield "frame_huge2", b"\x7f\xff\x02\x01", TR, "2-byte size 32767 over 4 bytes"
    yield "frame_huge4", b"\xff\xff\xff\xff\x02\x01", TR, "4-byte size 2^31-1 over 6 bytes"
    yield "frame_4byte_zero", b"\x80\x00\x00\x00" + S, NC, "4-byte size 0"
    yield "frame_partial_counter", b"\x00\x05\x03\x07\x01" + M, "ok", "a partial_data_counter"


def _ordering() -> Iterator[Case]:
    ndu = ndu_unit()
    agg = unit(6, bytes([0]) + ndu + ndu)
    yield "order_str_only", S, "ok", "a stream of one STR"
    yield "order_str_mps", S + M, "ok", "STR and MPS, no NDU"
    yield "order_mps_first", M + S + ndu, NC, "MPS before STR"
    yield "order_ndu_first", ndu, NC, "an NDU alone"
    yield "order_two_str", S + S + M + ndu, NC, "STR twice"
    yield "order_no_mps", S + ndu, NC, "no MPS before the NDU"
    yield "order_ndu_before_mps", S + ndu + M, NC, "NDU, then MPS"
    yield "order_dup_mps", S + M + M + ndu, NC, "two MPS before an NDU"
    yield "order_agg", S + M + agg, "any", "an aggregate unit of two NDUs"
    yield "order_agg_nested", S + M + unit(6, bytes([0]) + agg + ndu), NC, "AGG in AGG"
    yield "order_agg_short", S + M + unit(6, bytes([5]) + ndu), "error", "AGG of 7 units holding 1"
    for t in (7, 9, 32, 63):
        yield f"type_reserved_{t}", S + M + unit(t, b"\x00\x00"), NC, f"unit type {t}"
    yield "type_reserved_first", unit(40, b"\x01"), NC, "unit type 40 first"
    for p in (2, 3, 127, 255):
        yield f"unsup_profile_{p}", str_unit(p) + M, "unsupported", f"general_profile_idc {p}"
    yield "unsup_tpl_prun", S + M + unit(3, bytes([5, 0, 0])), "unsupported", "NNR_TPL_PRUN"
    yield ("unsup_split", S + M + ndu_unit(ids=0, name=b"a\x00b\x00"), "unsupported",
           "an id list in a FLOAT NDU (split tensors)")
    yield ("unsup_no_dims", S + M + ndu_unit(dims_present=0), "unsupported",
           "dimensions out of band")


def _headers() -> Iterator[Case]:
    """Reserved values and counts beyond the unit in NDU headers."""
    sm = S + M
    for pt in (4, 5, 17, 31):
        yield f"hdr_payload_type_{pt}", sm + ndu_unit(pt=pt), NC, f"payload type {pt}"
    for sc in (5, 9, 15):
        yield (f"hdr_scan_order_{sc}", sm + ndu_unit(dims=(16, 16), scan=sc), NC,
               f"scan_order {sc}")
    yield "hdr_parent_type_3", head(parent=1) + ndu_unit(parent_type=3), NC, "parent type 3"
    yield "hdr_unary_255", sm + ndu_unit(unary=255), "any", "cabac_unary_length_minus1 255"
    yield ("hdr_name_no_nul", sm + ndu_unit(name=b"weight", dims=(), payload=b""), "error",
           "topology_elem_id without NUL")
    yield "hdr_name_not_utf8", sm + ndu_unit(name=b"\xff\xfe\x00"), NC, "name not UTF-8"
    yield "hdr_id_list_huge", sm + ndu_unit(pt=3, ids=1 << 20), "error", "2^20+2 ids, short unit"
    yield ("hdr_codebook_huge", sm + ndu_unit(codebook=(0, 1 << 30, 0)), "error",
           "codebook of 2^30 entries, no deltas")
    yield ("hdr_codebook_zero_outside", sm + ndu_unit(codebook=(0, 3, 9, 0, 0, 0)), NC,
           "CbZeroOffset outside the codebook")
    yield "hdr_codebook_empty", sm + ndu_unit(codebook=(0, 0, 0)), NC, "codebook of 0 entries"
    yield ("hdr_entry_points_huge", sm + ndu_unit(dims=(1 << 22, 2), scan=4), "error",
           "65535 entry points announced by the dimensions, none coded")
    for step, what in ((-1, "each one bit before the previous"), (1 << 20, "2^20 bits apart")):
        yield (f"hdr_entry_points_step{'_neg' if step < 0 else step}",
               sm + ndu_unit(dims=(1024, 1024), scan=1, entry_points=127, ep_step=step),
               "error", f"1024 x 1024, scan order 1: 127 entry points {what}")
    yield "hdr_dc_rank0", sm + ndu_unit(cpt=1, dc=(0, 4)), "error", "decomposition rank 0"
    yield ("hdr_dc_huge", sm + ndu_unit(cpt=1, dc=(1 << 30, 1 << 30)), "error",
           "decomposition rank and G rows of 2^30")
    yield ("hdr_block_missing_ids", sm + ndu_unit(pt=3, cpt=8, ids=1, name=b"w\0b\0c\0"), NC,
           "BLOCK with bias: three ids for two tensors")
    for qd in (0, 2):   # step sizes that do not fit a float
        yield (f"hdr_qp_step_overflow_qd{qd}", S + mps_unit(qp_density=qd, qp=4095)
               + ndu_unit(dims=(4, 4), payload=_payload(4, 4, qd)), "any",
               f"MPS qp 4095 at qp_density {qd}: a step size beyond float32")
    # valid streams whose tensor names are hostile to file writers (decode must keep them)
    for tag, nm in (("dotdot", b"../../evil"), ("abs", b"/abs/path"), ("file", b"file"),
                    ("allow_pickle", b"allow_pickle"), ("empty", b"")):
        yield (f"names_{tag}", sm + ndu_unit(name=nm + b"\0", dims=(4, 4),
                                           payload=_payload(4, 4)),
               "ok", f"a valid tensor named {nm.decode()!r}")


def _dimensions() -> Iterator[Case]:
    sm = S + M
    yield "dims_2p31_1d", sm + ndu_unit(dims=(1 << 31,)), RL, "a 1-D tensor of 2^31 elements"
    yield "dims_2p31_2d", sm + ndu_unit(dims=(1 << 16, 1 << 15)), RL, "2^16 x 2^15"
    yield "dims_2p32", sm + ndu_unit(dims=(1 << 32,)), RL, "a dimension of 2^32"
    yield "dims_2p62", sm + ndu_unit(dims=(1 << 31, 1 << 31)), RL, "2^31 x 2^31"
    yield "dims_zero_and_huge", sm + ndu_unit(dims=(0, 1 << 33)), "any", "0 x 2^33"
    yield "dims_huge_and_zero", sm + ndu_unit(dims=(1 << 33, 0)), "any", "2^33 x 0"
    yield "dims_zero", sm + ndu_unit(dims=(0,)), "any", "a tensor of 0 elements"
    yield "dims_zero_2d", sm + ndu_unit(dims=(3, 0)), "any", "3 x 0"
    yield "dims_none", sm + ndu_unit(dims=()), "any", "count_tensor_dimensions 0"
    yield ("dims_none_block", sm + ndu_unit(pt=3, cpt=8, ids=0, name=b"w\0b\0", dims=()),
           "any", "BLOCK with bias and no dimensions")
    yield "dims_many", sm + ndu_unit(dims=(1,) * 100), "any", "100 dimensions of 1"
    yield ("dims_count_huge", sm + ndu_unit(dims=(2, 2), dim_count=1 << 24), "error",
           "2^24 dimensions announced")
    yield ("dims_raw_huge", sm + ndu_unit(pt=2, dims=(1 << 20, 1 << 20), payload=b""), "error",
           "RAW_FLOAT 2^40 elements, no payload")
    yield ("dims_raw_many", sm + ndu_unit(pt=2, dims=(1,) * 70, payload=b"\0\0\0\0"), "any",
           "RAW_FLOAT with 70 dimensions")


def _resources() -> Iterator[Case]:
    """Tiny streams declaring huge tensors, also where coding could be cheap."""
    sm = S + M
    cb1 = (0, 1, 0, 0)   # a one-entry codebook {0}
    bn_names = b"w\0a\0b\0c\0d\0"
    yield ("res_cb1_2p31", sm + ndu_unit(dims=(1 << 16, 1 << 15), codebook=cb1), RL,
           "one-entry codebook, 2^31 elements")
    yield ("res_cb1_2p28", sm + ndu_unit(dims=(1 << 14, 1 << 14), codebook=cb1), RL,
           "one-entry codebook, 2^28 elements")
    yield ("res_rowskip_cols", sm + ndu_unit(dims=(2, 1 << 30)), RL,
           "2 rows of 2^30 columns (row skipping could code it)")
    yield ("res_rowskip_rows", sm + ndu_unit(dims=(1 << 26, 2)), RL,
           "2^26 rows of 2 (one bin per row is more than the payload)")
    yield ("res_dense_1m", sm + ndu_unit(dims=(1 << 20,)), RL,
           "1-D tensor of 2^20 elements in 4 payload bytes")
    yield ("res_int_2p24", sm + ndu_unit(pt=0, dims=(1 << 24,)), RL,
           "INT 1-D tensor of 2^24 elements in 4 payload bytes")
    yield ("res_block_bn", sm + ndu_unit(pt=3, cpt=4, ids=3, name=bn_names, dims=(1 << 22, 1)),
           RL, "BLOCK with batch-norm: 5 tensors of 2^22 elements")
    yield ("res_profile0_cb1", str_unit(0) + mps_unit(0)
           + ndu_unit(profile=0, dims=(1 << 12, 1 << 12), codebook=cb1), RL,
           "profile 0 one-entry codebook (every element is coded)")


def crafted() -> Iterator[Case]:
    global S, M
    S, M = str_unit(), mps_unit()
    for family in (_framing, _ordering, _headers, _dimensions, _resources):
        yield from family()


# --- driver ---------------------------------------------------------------------------------
def generate() -> list[Case]:
    rng = random.Random(1593817)
    cases: list[Case] = list(crafted())
    for k, (name, data) in enumerate(sources().items()):
        src = name.replace(".", "_")
        cases += truncations(src, data)
        cases += bit_flips(src, data, rng)
        if k % 3 == 0:           # framing mutations do not depend much on the content
            cases += unit_sizes(src, data)
        cases += unit_types(src, data, rng)
    names = [c[0] for c in cases]
    if len(set(names)) != len(names):
        raise SystemExit("duplicate corpus names")
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "corpus")
    ap.add_argument("--seeds", type=Path, help="also write the valid source streams here")
    args = ap.parse_args(argv)
    cases = generate()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    manifest = {}
    for name, data, expected, what in cases:
        (args.out / f"{name}.nnr").write_bytes(data)
        family = name.split("_", 1)[0]
        manifest[f"{name}.nnr"] = {"family": family, "expected": expected, "what": what}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(len(c[1]) for c in cases)
    print(f"{len(cases)} files, {total} bytes in {args.out}")
    if args.seeds:
        args.seeds.mkdir(parents=True, exist_ok=True)
        for name, data in sources().items():
            (args.seeds / f"{name}.nnr").write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
