"""Seeds for cpp/fuzz/fuzz_payload.cpp: one file per NDU payload of the conformance vectors.

Each seed is the fuzz target's input layout (see fuzz_payload.cpp): a tensor count byte, 16
bytes of TensorParams per tensor, then the NDU payload. The parameters are the ones nnr's
decoder derives from the NDU header (rows, cols, scan order, DQ, qp width, profile, codebook,
legacy flavour; TCA / HDSP flags when the NDU uses them). Incremental sequences are walked in
order with one decoder state, so that update NDUs get the parameters they were coded with.

    python cpp/fuzz/make_seeds.py OUT_DIR [--vectors tests/vectors] [--max-bytes 768]

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

REPO = Path(__file__).resolve().parents[2]
MAX_ELEMENTS = 1 << 11          # kMaxElements of the fuzz target
PARAM = struct.Struct("<IIBBBBHH")


def _flags(spec, tca: bool, hdsp: bool) -> int:
    return (int(spec.dq) | int(spec.has_qp) << 1 | int(spec.profile == 1) << 2
            | int(spec.parent_node_id_present) << 3 | int(spec.legacy_v03) << 4
            | int(tca) << 5 | int(hdsp) << 6)


def encode_params(specs, payload: bytes) -> bytes:
    """The fuzz target's input for ``specs`` (a list of nnr.entropy.TensorSpec) and a payload."""
    if not 1 <= len(specs) <= 8:
        raise ValueError("the fuzz target takes 1..8 tensors")
    out = bytearray([len(specs) - 1])
    for s in specs:
        out += PARAM.pack(s.rows, s.cols, _flags(s, s.tca_base is not None,
                                                 s.hdsp_history is not None),
                          s.scan_order, 6 + s.qp_density, s.cabac_unary_length - 1,
                          s.codebook_size, s.codebook_zero_offset)
    return bytes(out) + bytes(payload)


def _sequences(vectors: Path) -> list[list[Path]]:
    """Streams grouped into sequences (``<id>.<step>.nnc`` in step order)."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for f in sorted(vectors.glob("*.nnc")):
        m = re.fullmatch(r"(.*)\.(\d+)\.nnc", f.name)
        key, step = (m.group(1), int(m.group(2))) if m else (f.stem, 0)
        groups.setdefault(key, []).append((step, f))
    return [[f for _, f in sorted(v)] for _, v in sorted(groups.items())]


def ndu_payloads(streams: list[bytes]) -> Iterator[tuple[list, bytes]]:
    """(specs, payload) of every CABAC-coded NDU of a sequence, decoded in order."""
    from nnr import decoder
    from nnr.bitstream.enums import NnrUnitType, PayloadType
    from nnr.bitstream.stream import StreamContext, iter_units
    from nnr.entropy import decode_payload

    state = decoder.DecoderState()
    for data in streams:
        ctx = StreamContext()
        for unit in iter_units(data, ctx):
            if unit.unit_type != NnrUnitType.NDU or unit.header.payload_type == PayloadType.RAW_FLOAT:
                continue
            legacy = ctx.general_profile_idc == 0
            elements = decoder._elements(unit, ctx)
            specs = [decoder._spec(e, unit, ctx, state, legacy) for e in elements]
            payload = bytes(data[unit.payload_start:unit.payload_end])
            yield specs, payload
            levels, _, _, _ = decode_payload(payload, specs)
            for e, k in zip(elements, levels):
                decoder._update_state(state, unit, ctx, e, k)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--vectors", type=Path, default=REPO / "tests" / "vectors")
    ap.add_argument("--max-bytes", type=int, default=768)
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
                specs[0].rows = max(1, MAX_ELEMENTS // max(specs[0].cols, 1))
                specs[0].tca_base = specs[0].hdsp_history = None
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
