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
from nnr.cli import files, models, reduce, tables
from nnr.cli.files import CliError
from nnr.cli.progress import Progress
from nnr.model import ROLES, Model

# CLI flag dest -> nnr.EncodeConfig field, one to one.
ENCODE_FIELDS = ("qp", "qp_density", "nonweight_qp", "qp_per_tensor", "dq", "scan_order",
                 "codebook", "profile", "param_opt", "row_skip", "cabac_unary_length_minus1",
                 "threads", "lambda_scale", "low_rank", "stochastic", "seed", "bit_depth")
#: Performance maps measured by ``--performance-maps`` without ``--map-levels``.
DEFAULT_MAP_LEVELS = {"sparsification": (0.25, 0.5, 1.0), "unification": (0.1, 0.3),
                      "decomposition": (0.1, 0.2, 0.3)}


def encode_options(args: argparse.Namespace) -> dict[str, object]:
    """The EncodeConfig fields the user set; the others keep nnr's defaults."""
    return {name: getattr(args, name) for name in ENCODE_FIELDS if hasattr(args, name)}


def _raw_size(tensors: Mapping[str, np.ndarray]) -> int:
    return sum(int(t.nbytes) for t in tensors.values())


def _ndu_sizes(data: bytes) -> tuple[dict[str, int], int]:
    """Coded bytes per NDU, keyed by its first tensor name (a decomposed weight's G and H
    units under the weight's name), and the topology unit's size."""
    from nnr.bitstream.enums import CompressedParameterTypes, NnrUnitType
    from nnr.bitstream.stream import iter_units
    sizes: dict[str, int] = {}
    topology = 0
    for unit in iter_units(data):
        if unit.unit_type == NnrUnitType.NDU:
            name = str(unit.header.topology_elem_ids[0])
            if unit.header.compressed_parameter_types & CompressedParameterTypes.DC \
                    and name.endswith(("_G", "_H")):
                name = name[:-2]
            sizes[name] = sizes.get(name, 0) + unit.size
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


def _load_evaluate(path: str):
    """``evaluate`` from a user's Python file; an exception it raises is reported as one
    line naming the script."""
    import importlib.util
    if not Path(path).is_file():
        raise CliError(f"cannot read '{path}': No such file or directory")
    spec = importlib.util.spec_from_file_location("nnr_user_eval", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's script: report, do not crash
        raise CliError(f"{path}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, "evaluate", None)
    if not callable(fn):
        raise CliError(f"{path} defines no evaluate(tensors) function")

    def guarded(f, what):
        def call(tensors):
            try:
                return f(tensors)
            except Exception as exc:  # the user's code
                raise CliError(f"{path}: {what}() raised {type(exc).__name__}: {exc}") from None
        return call

    evaluate = guarded(fn, "evaluate")
    dist = getattr(module, "distortion", None)
    evaluate.distortion = guarded(dist, "distortion") if callable(dist) else None
    return evaluate


def _evaluate(args: argparse.Namespace):
    """The --eval script's evaluate, loaded once for --max-drop and --performance-maps."""
    if getattr(args, "_evaluate", None) is None:
        args._evaluate = _load_evaluate(args.eval)
    return args._evaluate


def _target_options(args: argparse.Namespace, model: Model, options: dict) -> dict:
    """Per-tensor options (qps, and where the search drops DQ, dq and codebook) from
    --max-drop/--eval or --size (empty when neither is given)."""
    drop, size = getattr(args, "max_drop", None), getattr(args, "size", None)
    if drop is None and size is None:
        if getattr(args, "eval", None) and not getattr(args, "performance_maps", False):
            raise CliError("--eval needs --max-drop or --performance-maps")
        return {}
    if drop is not None and size is not None:
        raise CliError("give either --max-drop or --size, not both")
    if options.get("stochastic") is not None or options.get("bit_depth") is not None:
        raise CliError("--stochastic and --bit-depth choose the qps themselves: they cannot "
                       "be combined with --max-drop or --size")
    if options.get("low_rank") is not None:
        raise CliError("--low-rank cannot be combined with --max-drop or --size (the qp "
                       "search does not model the decomposition)")
    options = {k: v for k, v in options.items() if k != "qp_per_tensor"}
    if size is not None:
        return nnr.encode_for_size(model.tensors, size, **options).options
    if not getattr(args, "eval", None):
        raise CliError("--max-drop needs --eval SCRIPT.py")
    evaluate = _evaluate(args)
    budget = getattr(args, "max_evaluations", None)
    if budget is not None and budget < 1:
        raise CliError(f"--max-evaluations must be at least 1, got {budget}")
    res = nnr.encode_for_metric(model.tensors, evaluate, max_drop=drop,
                                distortion=evaluate.distortion, max_evaluations=budget,
                                **options)
    print(f"search: metric {res.metric:.6g} (original {res.baseline_metric:.6g}) after "
          f"{res.evaluations} evaluations", file=sys.stderr)
    return res.options


def _check_performance_maps(args: argparse.Namespace) -> None:
    """Option checks of --performance-maps and its companions (before anything is read)."""
    if not getattr(args, "performance_maps", False):
        for dest in ("map_levels", "metric", "groups", "layer_maps"):
            if getattr(args, dest, None) is not None:
                raise CliError(f"--{dest.replace('_', '-')} needs --performance-maps")
        return
    if not getattr(args, "eval", None):
        raise CliError("--performance-maps needs --eval SCRIPT.py (evaluate(tensors) -> float)")
    levels = getattr(args, "map_levels", None) or DEFAULT_MAP_LEVELS
    if levels.get("pruning") and not getattr(args, "groups", None):
        raise CliError("a pruning map (--map-levels pruning=...) needs --groups GROUPS.json")


def _performance_maps(args: argparse.Namespace, model: Model, options: dict):
    """The performance maps of --performance-maps: every level is reduced, coded with the
    stream's quantization options, decoded and evaluated."""
    from nnr.config import EncodeConfig
    from nnr.reduction import MapLevels, measure_performance_maps
    levels = getattr(args, "map_levels", None) or DEFAULT_MAP_LEVELS
    groups = reduce.read_groups(args.groups) if getattr(args, "groups", None) else None
    metric = getattr(args, "metric", None) or "top1"
    config = EncodeConfig.from_options(**{k: v for k, v in options.items() if k != "low_rank"})
    layers = _layer_map_names(args, model)
    maps = measure_performance_maps(
        model.tensors, _evaluate(args),
        MapLevels(sparsification=levels.get("sparsification", ()),
                  pruning=levels.get("pruning", ()), groups=groups,
                  unification=levels.get("unification", ()),
                  decomposition=levels.get("decomposition", ())),
        metric=metric, config=config, layers=layers)
    count = sum(len(v) for v in levels.values())
    per_layer = f", layer maps of {len(maps.layers)} weights" if maps.layers else ""
    print(f"performance maps: {metric} {maps.validation_set_performance:.6g} unreduced, "
          f"{count} levels of {', '.join(k for k, v in levels.items() if v)}{per_layer}",
          file=sys.stderr)
    return maps


def _layer_map_names(args: argparse.Namespace, model: Model) -> object:
    """--layer-maps: None (none), "all" (every weight) or the weight names given."""
    value = getattr(args, "layer_maps", None)
    if value is None or value == "all":
        return value
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise CliError("--layer-maps takes weight names separated by commas (or nothing: "
                       "every weight)")
    for n in names:
        if n not in model.tensors:
            raise CliError(f"--layer-maps: the model has no tensor {n!r}")
    return names


def _run_encode_streamed(args: argparse.Namespace) -> int:
    from nnr.streaming import encode_file
    if any(getattr(args, a, None) for a in ("max_drop", "size", "lossless", "performance_maps")) \
            or getattr(args, "low_rank", None) is not None \
            or getattr(args, "blocks", "none") != "none" or args.output == files.STDIO:
        raise CliError("--stream codes .npz/.safetensors files to a file, without targets, "
                       "blocks, --lossless, --low-rank or --performance-maps")
    start = time.perf_counter()
    out = Path(args.output)
    size = encode_file(args.input, out, **encode_options(args))
    print(f"wrote {args.output}: {tables.size(size)} in {time.perf_counter() - start:.2f} s")
    return 0


def _check_lowbit(args: argparse.Namespace) -> None:
    """Flag checks of --stochastic / --seed / --bit-depth (the rest is EncodeConfig's)."""
    stochastic = getattr(args, "stochastic", None)
    if getattr(args, "seed", None) is not None and stochastic is None:
        raise CliError("--seed needs --stochastic")
    if getattr(args, "lossless", False) and (stochastic is not None
                                             or getattr(args, "bit_depth", None) is not None):
        raise CliError("--lossless stores every float tensor unquantized: it cannot be "
                       "combined with --stochastic or --bit-depth")


def run_encode(args: argparse.Namespace) -> int:
    files.check_output_suffix(args.output, files.STREAM_SUFFIXES, "bitstream")
    _check_lowbit(args)
    if getattr(args, "stream", False):
        return _run_encode_streamed(args)
    fmt = models.input_format(args.input, getattr(args, "format", None))
    _check_performance_maps(args)
    blocks = getattr(args, "blocks", "none")
    if blocks not in ("auto", "none"):
        blocks = reduce.read_blocks(blocks)
    progress = Progress(False if getattr(args, "no_progress", False) else None)
    start = time.perf_counter()
    with progress.stage(f"reading {args.input}"):
        model = models.read_model(args.input, fmt)
    options = encode_options(args)
    with progress.stage("searching per-tensor qps"):
        options.update(_target_options(args, model, options))
    if getattr(args, "performance_maps", False):
        with progress.stage("measuring performance maps"):
            options["performance_maps"] = _performance_maps(args, model, options)
    with progress.stage(f"encoding {len(model.tensors)} tensors"):
        data = adapters.encode_model(model, blocks=None if blocks == "none" else blocks,
                                     lossless=getattr(args, "lossless", False), **options)
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


def _run_decode_selected(args: argparse.Namespace) -> int:
    """--tensor / --stream: straight to .npz or .safetensors, unit by unit."""
    from nnr.streaming import decode_file
    suffix = Path(args.output).suffix.lower()
    if len(args.inputs) != 1 or args.inputs[0] == files.STDIO or suffix not in (
            ".npz", ".safetensors"):
        raise CliError("--tensor and --stream decode one stream file into an .npz or "
                       ".safetensors file")
    if not Path(args.inputs[0]).is_file():
        raise CliError(f"cannot read '{args.inputs[0]}': No such file or directory")
    names = getattr(args, "tensor", None)
    count = decode_file(args.inputs[0], args.output, names=names,
                        threads=getattr(args, "threads", None))
    if names and count < len(set(names)):
        Path(args.output).unlink(missing_ok=True)
        raise CliError(f"the stream has {count} of the {len(set(names))} tensors asked for")
    print(f"wrote {args.output}: {count} tensors")
    return 0


def run_decode(args: argparse.Namespace) -> int:
    if getattr(args, "tensor", None) or getattr(args, "stream", False):
        return _run_decode_selected(args)
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
    maps = getattr(info, "performance_maps", None)
    if maps:
        lines += [""] + _map_lines(maps)
    layers = getattr(info, "layer_performance_maps", None) or {}
    metric = (maps or {}).get("metric")
    for layer, lmaps in layers.items():
        lines += [""] + _map_lines(lmaps, f"layer performance maps of {layer}", metric,
                                   layer=True)
    return lines


def _percent(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _map_lines(maps: Mapping[str, object], head: str = "performance maps",
               metric: str | None = None, layer: bool = False) -> list[str]:
    """The MPS performance maps (or one layer's, whose metric is the MPS's and whose
    pruning ratio is the fraction of the layer's channels): one row per level of each map."""
    if maps.get("metric") is not None:
        metric = maps["metric"]
        head += f" ({metric}"
        if maps.get("validation_set_performance") is not None:
            head += f" {tables.number(maps['validation_set_performance'])} unreduced"
        head += ")"
    metric = metric or "metric"
    rows: list[list[object]] = []
    for e in maps.get("sparsification", []):
        rows.append(["sparsification", f"|w| < {tables.number(e['threshold'])} RMS",
                     f"{_percent(e['non_zero_ratio'])} non-zero", e["accuracy"]])
    for e in maps.get("pruning", []):
        what = "its channels" if layer else "the parameters"
        rows.append(["pruning", "channels", f"{_percent(e['pruning_ratio'])} of {what} "
                     "removed", e["accuracy"]])
    for e in maps.get("unification", []):
        block = "x".join(str(b) if b else "all" for b in e["block_dimensions"])
        rows.append(["unification", f"{_percent(e['threshold'])} of {block} blocks", None,
                     e["accuracy"]])
    for e in maps.get("decomposition", []):
        rows.append(["decomposition", f"mse {tables.number(e['mse_threshold'])}",
                     f"{_percent(e['nn_reduction_ratio'])} of the parameters", e["accuracy"]])
    if not rows:
        return [f"{head}: none"]
    return [f"{head}:"] + tables.table(["map", "level", "size", metric], rows, right=(3,))


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
