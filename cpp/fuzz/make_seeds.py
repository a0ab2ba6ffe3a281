"""Seeds for cpp/fuzz/fuzz_payload.cpp: one file per NDU payload of the conformance vectors.

Each seed is the fuzz target's input layout (see fuzz_payload.cpp): a tensor count byte, 16
bytes of TensorParams per tensor, then the NDU payload. The parameters are the ones nnr's
decoder derives from the NDU header (rows, cols, scan order, DQ, qp width, profile, codebook,
legacy flavour; TCA / HDSP flags when the NDU uses them). Incremental sequences are walked in
order with one decoder state, so that update NDUs get the parameters they were coded with.

    python cpp/fuzz/make_seeds.py OUT_DIR [--vectors tests/vectors] [--max-bytes 512]

Needs nnr importable (PYTHONPATH=src with a built _core).
"""
from __future__ import annotations

import argparse
import hashlib
import re
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MAX_ELEMENTS = 1 << 9           # kMaxElements of the fuzz target
PARAM = struct.Struct("<IIBBBBHH")


def _flags(spec, tca: bool, hdsp: bool) -> int:
    return (int(spec.dq) | int(spec.has_qp) << 1 | int(spec.profile == 1) << 2
            | int(spec.parent_node_id_present) << 3 | int(spec.legacy_v03) << 4
            | int(tca) << 5 | int(hdsp) << 6)


def encode_params(specs, payload: bytes) -> bytes:
    """The fuzz target's input for ``specs`` (a list of nnr.entropy.TensorSpec) and a payload;
    a spec's ``entry_point_deltas`` (delta, offset, dq_state) are passed on (flag 7)."""
    if not 1 <= len(specs) <= 8:
        raise ValueError("the fuzz target takes 1..8 tensors")
    out = bytearray([len(specs) - 1])
    eps = bytearray()
    for s in specs:
        deltas = list(getattr(s, "entry_point_deltas", []) or [])[:255]
        flags = _flags(s, s.tca_base is not None, s.hdsp_history is not None)
        out += PARAM.pack(s.rows, s.cols, flags | (128 if deltas else 0), s.scan_order,
                          6 + s.qp_density, s.cabac_unary_length - 1, s.codebook_size,
                          s.codebook_zero_offset)
        if deltas:
            eps += bytes([len(deltas)])
            for d, o, q in deltas:
                eps += struct.pack("<IBB", d & 0xFFFFFFFF, o, q)
    # the entry points follow the parameters of all tensors
    return bytes(out) + bytes(eps) + bytes(payload)


def _sequences(vectors: Path) -> list[list[Path]]:
    """Streams grouped into sequences (``<id>.<step>.nnc`` in step order)."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for f in sorted(vectors.glob("*.nnc")):
        m = re.fullmatch(r"(.*)\.(\d+)\.nnc", f.name)
        key, step = (m.group(1), int(m.group(2))) if m else (f.stem, 0)
        groups.setdefault(key, []).append((step, f))
    return [[f for _, f in sorted(v)] for _, v in sorted(groups.items())]


def _specs(unit, ctx) -> list:
    """TensorSpecs of a CABAC NDU's tensors in payload order (as nnr's decoder derives them;
    TCA / HDSP only as flags: the fuzz target makes up the parent levels and history)."""
    from math import prod

    from nnr.bitstream.enums import CompressedParameterTypes as CPT
    from nnr.bitstream.enums import PayloadType
    from nnr.entropy import TensorSpec

    hdr, dims = unit.header, list(unit.dims)
    pt, cpt, profile = hdr.payload_type, hdr.compressed_parameter_types, ctx.general_profile_idc
    if cpt & CPT.DC:
        raise ValueError("decomposed tensors are not seeded")
    lps, mps = ctx.lps, ctx.mps
    qd = lps.lps_qp_density if lps is not None and lps.lps_qp_density is not None else \
        (mps.mps_qp_density if mps is not None else None)

    def spec(shape: list[int], codebook) -> TensorSpec:
        cb = codebook if (pt != PayloadType.INT and profile == 1) else None
        s = TensorSpec(
            rows=shape[0] if shape else 1, cols=prod(shape[1:]) if len(shape) > 1 else 1,
            scan_order=hdr.scan_order if len(shape) > 1 else 0,
            dq=bool(hdr.dq_flag) and pt != PayloadType.INT, has_qp=pt != PayloadType.INT,
            qp_density=qd if qd is not None else 2, profile=profile,
            parent_node_id_present=bool(hdr.parent_node_id_present_flag),
            cabac_unary_length=hdr.cabac_unary_length_minus1 + 1,
            codebook_size=cb.codebook_size if cb is not None else 0,
            codebook_zero_offset=cb.cb_zero_offset if cb is not None else 0,
            legacy_v03=profile == 0)
        n = s.rows * s.cols
        if hdr.temporal_context_modeling_flag and profile == 1:
            s.tca_base = np.zeros(n, np.int32)
        if hdr.parent_node_id_present_flag and profile == 1:
            s.hdsp_history = np.zeros(n, np.uint8)
        return s

    if pt != PayloadType.BLOCK:
        return [spec(dims, hdr.codebook)]
    members = int(bool(cpt & CPT.LS)) + int(bool(cpt & CPT.BI)) + 4 * int(bool(cpt & CPT.BN))
    return [spec(dims[:1], None) for _ in range(members)] + [spec(dims, hdr.codebook)]


def ndu_payloads(streams: list[bytes]) -> Iterator[tuple[list, bytes]]:
    """(specs, payload) of every CABAC-coded NDU of the streams."""
    from nnr.bitstream.enums import NnrUnitType
    from nnr.bitstream.stream import StreamContext, iter_units

    for data in streams:
        ctx = StreamContext()
        for unit in iter_units(data, ctx):
            if unit.unit_type == NnrUnitType.NDU and unit.header.uses_cabac:
                try:
                    specs = _specs(unit, ctx)
                except ValueError:
                    continue
                _entry_points(specs, list(unit.header.cabac_entry_point_list))
                yield specs, bytes(data[unit.payload_start:unit.payload_end])


def _block_rows(spec) -> int:
    scan = spec.scan_order if spec.rows > 1 and spec.cols > 1 else 0
    return -(-spec.rows // (4 << scan)) if scan else 0


def _entry_points(specs: list, coded: list) -> None:
    """The header's entry points, split over the block-scanned tensors in payload order."""
    i = 0
    for spec in specs:
        n = max(_block_rows(spec) - 1, 0)
        spec.entry_point_deltas = [(e.bit_offset_delta, e.cabac_offset, e.dq_state)
                                   for e in coded[i:i + n]]
        i += n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--vectors", type=Path, default=REPO / "tests" / "vectors")
    ap.add_argument("--max-bytes", type=int, default=512)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for seq in _sequences(args.vectors):
        try:
            items = list(ndu_payloads([p.read_bytes() for p in seq]))
        except Exception as exc:  # noqa: BLE001 - a seed generator skips what it cannot use
            print(f"skip {seq[0].name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        for specs, payload in items:
            if len(specs) > 8:
                continue
            if sum(s.size for s in specs) > MAX_ELEMENTS:
                if len(specs) > 1:
                    continue
                # the first rows only: the payload's prefix still decodes, then ends wrongly
                s0 = specs[0]
                s0.rows = max(1, MAX_ELEMENTS // max(s0.cols, 1))
                s0.entry_point_deltas = s0.entry_point_deltas[:max(_block_rows(s0) - 1, 0)]
                if s0.tca_base is not None:
                    s0.tca_base = np.zeros(s0.size, np.int32)
                if s0.hdsp_history is not None:
                    s0.hdsp_history = np.zeros(s0.size, np.uint8)
                if specs[0].size > MAX_ELEMENTS:
                    continue
            # libFuzzer reads only -max_len bytes of a seed: crop the payload to fit
            seed = encode_params(specs, payload)[:args.max_bytes]
            (args.out / hashlib.sha1(seed).hexdigest()[:16]).write_bytes(seed)
            written += 1
    print(f"{written} seeds in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
