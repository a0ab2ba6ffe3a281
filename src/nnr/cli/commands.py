"""The ``encode``, ``decode`` and ``info`` subcommands (``verify`` is in :mod:`nnr.cli.verify`)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

import nnr
from nnr import adapters
from nnr.cli import files, models, tables
from nnr.cli.files import CliError
from nnr.cli.progress import Progress
from nnr.model import ROLES, Model

# CLI flag dest -> nnr.EncodeConfig field, one to one.
ENCODE_FIELDS = ("qp", "qp_density", "nonweight_qp", "qp_per_tensor", "dq", "scan_order",
                 "codebook", "profile", "param_opt", "row_skip", "cabac_unary_length_minus1",
                 "threads")


def encode_options(args: argparse.Namespace) -> dict[str, object]:
    """The EncodeConfig fields the user set; the others keep nnr's defaults."""
    return {name: getattr(args, name) for name in ENCODE_FIELDS if hasattr(args, name)}


def _raw_size(tensors: Mapping[str, np.ndarray]) -> int:
    return sum(int(t.nbytes) for t in tensors.values())


def _ndu_sizes(data: bytes) -> tuple[dict[str, int], int]:
    """Coded bytes per NDU, keyed by its first tensor name, and the topology unit's size."""
    from nnr.bitstream.enums import NnrUnitType
    from nnr.bitstream.stream import iter_units
    sizes, topology = {}, 0
    for unit in iter_units(data):
        if unit.unit_type == NnrUnitType.NDU:
            sizes[str(unit.header.topology_elem_ids[0])] = unit.size
        elif unit.unit_type == NnrUnitType.TPL:
            topology = unit.size
    return sizes, topology


def _ratio(coded: int, raw: int) -> str:
    return f"{100.0 * coded / raw:.2f}%" if raw else "-"


def summary_rows(model: Model, data: bytes, seconds: float) -> list[list[object]]:
    """Rows of the encode summary: one per role, the topology and the total. A block NDU's
    bytes count under its weight."""
    sizes, topology = _ndu_sizes(data)
    by_role: dict[str, list[int]] = {}
    for name in model.tensors:
        row = by_role.setdefault(model.role(name), [0, 0, 0])
        row[0] += 1
        row[1] += model.nbytes([name])
        row[2] += sizes.get(name, 0)
    order = {role: i for i, role in enumerate(ROLES)}
    rows: list[list[object]] = [[role, n, raw, coded, _ratio(coded, raw), None]
                                for role, (n, raw, coded) in sorted(
                                    by_role.items(), key=lambda kv: order.get(kv[0], 99))]
    rows.append(["topology", None, None, topology, None, None])
    raw = model.nbytes()
    rows.append(["total", len(model.tensors), raw, len(data), _ratio(len(data), raw),
                 f"{seconds:.2f} s"])
    return rows


def run_encode(args: argparse.Namespace) -> int:
    files.check_output_suffix(args.output, files.STREAM_SUFFIXES, "bitstream")
    fmt = models.input_format(args.input, getattr(args, "format", None))
    progress = Progress(False if getattr(args, "no_progress", False) else None)
    start = time.perf_counter()
    with progress.stage(f"reading {args.input}"):
        model = models.read_model(args.input, fmt)
    with progress.stage(f"encoding {len(model.tensors)} tensors"):
        blocks = getattr(args, "blocks", "none")
        data = adapters.encode_model(model, blocks=None if blocks == "none" else blocks,
                                     lossless=getattr(args, "lossless", False),
                                     **encode_options(args))
    files.write_bytes(args.output, data)
    if args.output != files.STDIO:
        raw = model.nbytes()
        ratio = f", {100.0 * len(data) / raw:.2f}% of {tables.size(raw)}" if raw else ""
        print(f"wrote {args.output}: {len(model.tensors)} tensors, {tables.size(len(data))}"
              f"{ratio}")
        rows = summary_rows(model, data, time.perf_counter() - start)
        print("\n".join(tables.table(["role", "tensors", "original bytes", "coded bytes",
                                      "ratio", "time"], rows, right=(1, 2, 3, 4, 5))))
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
    fmt = models.output_format(args.output, getattr(args, "format", None))
    if len(args.inputs) > 1 and fmt != "numpy":
        raise CliError("several streams (an incremental sequence) decode into an .npz only")
    streams = [files.read_bytes(path) for path in args.inputs]
    progress = Progress(False if getattr(args, "no_progress", False) else None)
    if len(streams) > 1:
        model = Model(tensors=decode_streams(streams))
    else:
        with progress.stage("decoding"):
            model = adapters.decode_model(streams[0])
    with progress.stage(f"writing {args.output}"):
        models.write_model(args.output, model, fmt)
    if args.output != files.STDIO:
        print(f"wrote {args.output}: {len(model.tensors)} tensors, "
              f"{tables.size(model.nbytes())}")
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
