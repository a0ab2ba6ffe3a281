"""The ``encode``, ``decode`` and ``info`` subcommands (``verify`` is in :mod:`nnr.cli.verify`)."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

import nnr
from nnr.cli import files, tables

# CLI flag dest -> nnr.EncodeConfig field, one to one.
ENCODE_FIELDS = ("qp", "qp_density", "nonweight_qp", "qp_per_tensor", "dq", "scan_order",
                 "codebook", "profile", "param_opt", "row_skip", "cabac_unary_length_minus1",
                 "threads")


def encode_options(args: argparse.Namespace) -> dict[str, object]:
    """The EncodeConfig fields the user set; the others keep nnr's defaults."""
    return {name: getattr(args, name) for name in ENCODE_FIELDS if hasattr(args, name)}


def _raw_size(tensors: Mapping[str, np.ndarray]) -> int:
    return sum(int(t.nbytes) for t in tensors.values())


def run_encode(args: argparse.Namespace) -> int:
    files.check_output_suffix(args.output, files.STREAM_SUFFIXES, "bitstream")
    tensors = files.read_tensors(args.input)
    data = nnr.encode(tensors, **encode_options(args))
    files.write_bytes(args.output, data)
    if args.output != files.STDIO:
        raw = _raw_size(tensors)
        ratio = f", {100.0 * len(data) / raw:.2f}% of {tables.size(raw)}" if raw else ""
        print(f"wrote {args.output}: {len(tensors)} tensors, {tables.size(len(data))}{ratio}")
    return 0


def decode_streams(streams: list[bytes]) -> dict[str, np.ndarray]:
    """One stream: keys are tensor names. Several: an incremental sequence decoded in order
    with one decoder state, keys ``<step>/<name>``."""
    if len(streams) == 1:
        return dict(nnr.decode(streams[0]))
    state = nnr.DecoderState()
    out: dict[str, np.ndarray] = {}
    for step, data in enumerate(streams):
        for name, value in nnr.decode(data, state=state).items():
            out[f"{step}/{name}"] = value
    return out


def run_decode(args: argparse.Namespace) -> int:
    files.check_output_suffix(args.output, (".npz",), "tensor")
    streams = [files.read_bytes(path) for path in args.inputs]
    tensors = decode_streams(streams)
    files.write_tensors(args.output, tensors)
    if args.output != files.STDIO:
        print(f"wrote {args.output}: {len(tensors)} tensors, {tables.size(_raw_size(tensors))}")
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    return str(value)


def _unit_rows(info: object) -> list[list[object]]:
    return [[u.index, u.unit_type, u.offset, u.size] for u in info.units]


def _tensor_rows(info: object) -> list[list[object]]:
    rows = []
    for t in info.tensors:
        scan = getattr(t, "scan_order", None) if len(t.shape) > 1 else None
        rows.append([getattr(t, "ndu_index", None), t.name, tables.shape(t.shape),
                     getattr(t, "dtype", None), getattr(t, "payload_type", None),
                     getattr(t, "qp", None), getattr(t, "dq", None), scan,
                     getattr(t, "codebook", None), getattr(t, "coded_bytes", None)])
    return rows


def info_text(name: str, size: int, info: object) -> list[str]:
    tools = ", ".join(sorted(info.tools)) if info.tools else "-"
    lines = [f"{name}: {tables.size(size)}, profile {info.profile}, "
             f"{len(info.units)} units, {len(info.tensors)} tensors",
             f"tools: {tools}", "", "units:"]
    lines += tables.table(["#", "type", "offset", "size"], _unit_rows(info), right=(0, 2, 3))
    lines += ["", "tensors:"]
    lines += tables.table(["ndu", "name", "shape", "dtype", "type", "qp", "dq", "scan",
                           "codebook", "bytes"], _tensor_rows(info), right=(0, 5, 7, 9))
    return lines


def inspect_last(streams: list[bytes]) -> object:
    """``nnr.inspect`` of the last stream, after decoding the ones before it (an update stream
    that uses TCA or HDSP needs the decoder state of the earlier steps)."""
    if len(streams) == 1:
        return nnr.inspect(streams[0])
    state = nnr.DecoderState()
    for data in streams[:-1]:
        nnr.decode(data, state=state)
    return nnr.inspect(streams[-1], state=state)


def run_info(args: argparse.Namespace) -> int:
    streams = [files.read_bytes(path) for path in args.inputs]
    data = streams[-1]
    info = inspect_last(streams)
    if args.json:
        json.dump(info.to_dict(), sys.stdout, indent=2, default=_json_default)
        sys.stdout.write("\n")
    else:
        last = args.inputs[-1]
        label = "<stdin>" if last == files.STDIO else Path(last).name
        print("\n".join(info_text(label, len(data), info)))
    return 0
