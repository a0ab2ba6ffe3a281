"""``nnr reduce``: the data-free parameter-reduction tools of :mod:`nnr.reduction` on a model
file in any format the CLI reads, written in any format it writes.

    nnr reduce fold-bn MODEL -o OUT [--eps 1e-5] [--blocks BLOCKS.json]
    nnr reduce local-scaling MODEL -o OUT [--qp QP] [--qp-density N] [--no-dq]
                             [--blocks BLOCKS.json]
    nnr reduce sparsify MODEL -o OUT (--ratio R | --threshold T) [--scope layer|global]
    nnr reduce micro-prune MODEL -o OUT --ratio R [--block 2,2,0]
    nnr reduce unify MODEL -o OUT --ratio R [--block 2,2,0]
    nnr reduce decompose MODEL -o OUT --tolerance TOL
    nnr reduce prune-channels MODEL -o OUT --groups GROUPS.json --ratio R [--scope group|global]

``fold-bn`` and ``local-scaling`` write the NNR_PT_BLOCK structure they create to ``--blocks``
(JSON, :attr:`nnr.EncodeConfig.blocks`), which ``nnr encode --blocks BLOCKS.json`` reads.
``python -m nnr.reduction TOOL ...`` is the same command (:func:`alias_main`). docs/cli.md and
docs/reduction.md describe the tools.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnr.cli import files, models
from nnr.cli.files import CliError
from nnr.cli.progress import Progress
from nnr.errors import ConfigError
from nnr.model import Model

__all__ = ["TOOLS", "add_reduce", "add_tools", "run_reduce", "read_blocks", "read_groups",
           "alias_main", "ALIAS_PROG"]

ALIAS_PROG = "python -m nnr.reduction"
#: Output formats whose file is a graph holding the model's tensors by name and shape: a tool
#: that adds, removes or reshapes tensors cannot write them.
_GRAPH_FORMATS = ("onnx", "tensorflow", "nnef")
_TENSOR_FILES = ".npz, .safetensors or .pt"


@dataclass
class Reduced:
    """What a tool made: the tensors, the one-line summary and, for the tools that create
    NNR_PT_BLOCK structure, the blocks (:attr:`nnr.EncodeConfig.blocks`)."""

    tensors: dict[str, np.ndarray]
    summary: str
    blocks: dict[str, dict[str, str]] | None = None


@dataclass(frozen=True)
class Tool:
    """One ``nnr reduce`` subcommand: its options, the checks of their values (made before
    the model is read) and the reduction itself."""

    name: str
    help: str
    add_options: Callable[[argparse.ArgumentParser], None]
    check: Callable[[argparse.Namespace], None]
    run: Callable[[dict[str, np.ndarray], argparse.Namespace], Reduced]
    writes_blocks: bool = False


# ----------------------------------------------------------------------------- option values

def _block(text: str) -> tuple[int | None, ...]:
    """'2,2,0' -> (2, 2, None): a block of out x in x rest elements, 0 = the whole axis."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(p < 0 for p in parts):
        raise argparse.ArgumentTypeError(f"a block is three integers >= 0, e.g. 2,2,0 "
                                         f"(0 = the whole axis), got {text!r}")
    return tuple(None if p == 0 else p for p in parts)


def _block_text(block: Sequence[int | None]) -> str:
    return "x".join("all" if b is None else str(b) for b in block)


def _ratio(value: float | None, option: str = "--ratio") -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{option} must be in [0, 1], got {value:g}")


def _no_check(args: argparse.Namespace) -> None:
    pass


def _params(tensors: Mapping[str, np.ndarray]) -> int:
    return sum(int(np.size(a)) for a in tensors.values())


def _count(n: int) -> str:
    return f"{n:,}"


def _weights(tensors: Mapping[str, np.ndarray]) -> list[str]:
    from nnr.reduction._common import weight_names
    return weight_names(tensors)


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# ------------------------------------------------------------------------------- JSON inputs

def _read_json(path: str, what: str) -> Any:
    if path == files.STDIO:
        raise CliError(f"{what} must be a file, not '-'")
    data = files.read_bytes(path)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CliError(f"cannot read '{path}' as JSON: {exc}") from None


def read_blocks(path: str) -> dict[str, dict[str, str]]:
    """NNR_PT_BLOCK definitions from a JSON file, ``{weight: {role: tensor}}`` (what
    ``nnr reduce fold-bn / local-scaling --blocks`` write; roles are checked by the encoder)."""
    doc = _read_json(path, "--blocks")
    ok = isinstance(doc, dict) and all(
        isinstance(w, str) and isinstance(m, dict)
        and all(isinstance(r, str) and isinstance(n, str) for r, n in m.items())
        for w, m in doc.items())
    if not ok:
        raise CliError(f"'{path}': blocks must be a JSON object "
                       '{"<weight>": {"<role>": "<tensor>", ...}, ...}')
    return {w: dict(m) for w, m in doc.items()}


def _slice(item: Any, where: str):
    from nnr.reduction import Slice
    if isinstance(item, str):
        return Slice(item)
    if isinstance(item, dict) and isinstance(item.get("name"), str) \
            and set(item) <= {"name", "axis", "repeat"}:
        axis, repeat = item.get("axis", 0), item.get("repeat", 1)
        if isinstance(axis, int) and isinstance(repeat, int) and not isinstance(axis, bool) \
                and not isinstance(repeat, bool):
            return Slice(item["name"], axis, repeat)
    raise CliError(f"{where}: a member is a tensor name or "
                   '{"name": ..., "axis": int, "repeat": int}')


def _batch_norm(item: Any, where: str):
    from nnr.reduction import BatchNorm
    keys = {"gamma", "beta", "mean", "var"}
    if isinstance(item, dict) and keys <= set(item) <= keys | {"eps"} \
            and all(isinstance(item[k], str) for k in keys) \
            and isinstance(item.get("eps", 1e-5), (int, float)):
        return BatchNorm(item["gamma"], item["beta"], item["mean"], item["var"],
                         float(item.get("eps", 1e-5)))
    raise CliError(f'{where}: "bn" is {{"gamma", "beta", "mean", "var": tensor names, '
                   '"eps": number}')


def read_groups(path: str) -> list[Any]:
    """Channel groups (:class:`nnr.reduction.ChannelGroup`) from a JSON list of
    ``{"producer": name, "members": [name | {"name", "axis", "repeat"}, ...], "bn": {...}}``."""
    from nnr.reduction import ChannelGroup
    doc = _read_json(path, "--groups")
    if not isinstance(doc, list) or not doc:
        raise CliError(f"'{path}': channel groups must be a non-empty JSON list of "
                       '{"producer": ..., "members": [...]} objects')
    out = []
    for i, g in enumerate(doc):
        where = f"'{path}', group {i}"
        if not isinstance(g, dict) or not isinstance(g.get("producer"), str) \
                or not isinstance(g.get("members", []), list) \
                or not set(g) <= {"producer", "members", "bn"}:
            raise CliError(f"{where}: a group is "
                           '{"producer": name, "members": [...], "bn": {...}}')
        members = tuple(_slice(m, where) for m in g.get("members", []))
        bn = _batch_norm(g["bn"], where) if g.get("bn") is not None else None
        out.append(ChannelGroup(g["producer"], members, bn))
    return out


# ------------------------------------------------------------------------------------ tools

def _add_fold_bn(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eps", type=float, default=1e-5,
                   help="batch-norm epsilon (default: 1e-05, PyTorch's)")
    p.add_argument("--blocks", metavar="BLOCKS.json",
                   help="write the blocks (each weight with its <w>_scaling and bias) here, for "
                        "nnr encode --blocks")


def _check_fold_bn(args: argparse.Namespace) -> None:
    if not args.eps >= 0:
        raise ConfigError(f"--eps must be >= 0, got {args.eps:g}")


def _fold_bn(tensors: dict[str, np.ndarray], args: argparse.Namespace) -> Reduced:
    from nnr.reduction import find_batch_norms, fold_batch_norm
    bns = find_batch_norms(tensors, args.eps)
    if not bns:
        raise CliError("fold-bn: no batch norm follows a weight (expected PyTorch names in "
                       "order: <layer>.weight [<layer>.bias] <bn>.weight <bn>.bias "
                       "<bn>.running_mean <bn>.running_var)")
    out, blocks = fold_batch_norm(tensors, bns)
    return Reduced(out, f"folded {len(bns)} batch norms ({_names(list(bns))}) into "
                        f"<w>_scaling and the bias: {len(tensors)} -> {len(out)} tensors, "
                        f"{_count(_params(tensors))} -> {_count(_params(out))} parameters",
                   blocks)


def _add_local_scaling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--qp", type=int, default=-38, metavar="QP",
                   help="the weights' qp in nnr encode (default: -38)")
    p.add_argument("--qp-density", type=int, default=2, metavar="N",
                   help="the qp density in nnr encode (default: 2)")
    p.add_argument("--dq", action=argparse.BooleanOptionalAction, default=True,
                   help="dependent quantization in nnr encode (default: on)")
    p.add_argument("--blocks", metavar="BLOCKS.json",
                   help="blocks to extend (read when the file exists, e.g. from fold-bn) and "
                        "write back, for nnr encode --blocks")


def _quantization(args: argparse.Namespace) -> dict[str, Any]:
    return {"qp": args.qp, "qp_density": args.qp_density, "dq": args.dq}


def _check_local_scaling(args: argparse.Namespace) -> None:
    from nnr.config import EncodeConfig
    EncodeConfig(**_quantization(args))


def _local_scaling(tensors: dict[str, np.ndarray], args: argparse.Namespace) -> Reduced:
    from nnr.reduction import add_local_scaling
    old = read_blocks(args.blocks) if args.blocks and os.path.exists(args.blocks) else None
    out, blocks = add_local_scaling(tensors, blocks=old, **_quantization(args))
    scaled = [w for w, m in blocks.items() if "weight.ls" in m and w in out]
    dq = "on" if args.dq else "off"
    return Reduced(out, f"least-squares <w>_scaling for {len(scaled)} weights at qp {args.qp} "
                        f"(qp density {args.qp_density}, dq {dq}; encode with the same): "
                        f"{len(tensors)} -> {len(out)} tensors", blocks)


def _add_sparsify(p: argparse.ArgumentParser) -> None:
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--ratio", type=float, metavar="R",
                     help="fraction of the weights (tensors of 2 or more dimensions) to zero")
    how.add_argument("--threshold", type=float, metavar="T",
                     help="zero every |w| < T * RMS of its tensor instead")
    p.add_argument("--scope", choices=("layer", "global", "tensor"), default="layer",
                   help="layer: R of each weight tensor (default); global: R of all weights, "
                        "ranked by |w| / RMS of their tensor ('tensor' = layer)")


def _check_sparsify(args: argparse.Namespace) -> None:
    _ratio(args.ratio)
    if args.threshold is not None and not args.threshold >= 0:
        raise ConfigError(f"--threshold must be >= 0, got {args.threshold:g}")


def _zeros(tensors: Mapping[str, np.ndarray], names: Sequence[str]) -> tuple[int, int]:
    from nnr.reduction._common import count_nonzero
    nz, total = count_nonzero(tensors, names)
    return total - nz, total


def _sparsity_change(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray],
                     names: Sequence[str]) -> str:
    z0, total = _zeros(before, names)
    z1, _ = _zeros(after, names)
    if not total:
        return "no weights (float tensors of 2 or more dimensions)"
    return (f"zeroed {_count(z1 - z0)} of {_count(total)} weights in {len(names)} tensors, "
            f"sparsity {z0 / total:.1%} -> {z1 / total:.1%}")


def _sparsify(tensors: dict[str, np.ndarray], args: argparse.Namespace) -> Reduced:
    from nnr.reduction import magnitude_sparsify
    scope = "global" if args.scope == "global" else "tensor"
    out = magnitude_sparsify(tensors, args.ratio, threshold=args.threshold, scope=scope)
    return Reduced(out, _sparsity_change(tensors, out, _weights(tensors)))


def _add_blockwise(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ratio", type=float, required=True, metavar="R",
                   help="fraction of each weight's blocks")
    p.add_argument("--block", type=_block, default=(2, 2, None), metavar="OUT,IN,REST",
                   help="block size (0 = the whole axis; default 2,2,0: 2 x 2 channels x the "
                        "whole kernel)")


def _check_blockwise(args: argparse.Namespace) -> None:
    _ratio(args.ratio)


def _micro_prune(tensors: dict[str, np.ndarray], args: argparse.Namespace) -> Reduced:
    from nnr.reduction import micro_prune
    from nnr.reduction.microstructure import block_ids
    out, masks = micro_prune(tensors, args.ratio, block=args.block)
    chosen = total = 0
    for n, keep in masks.items():
        ids, nb = block_ids(keep.shape, args.block)
        chosen += len(np.unique(ids[~keep]))
        total += nb
    return Reduced(out, f"pruned {_count(chosen)} of {_count(total)} blocks of "
                        f"{_block_text(args.block)}: "
                        + _sparsity_change(tensors, out, list(masks)))


def _unify(tensors: dict[str, np.ndarray], args: argparse.Namespace) -> Reduced:
    from nnr.reduction import unify
    out, plan = unify(tensors, args.ratio, block=args.block)
    chosen = total = weights = 0
    for n, ids in plan.ids.items():
        uni = plan.unified[n]
        chosen += len(np.unique(ids[uni]))
        total += int(ids.max()) + 1 if ids.size else 0
        weights += int(uni.sum())
    return Reduced(out, f"unified {_count(chosen)} of {_count(total)} blocks of "
                        f"{_block_text(args.block)} ({_count(weights)} weights) in "
                        f"{len(plan.ids)} tensors")


def _add_decompose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tolerance", type=float, required=True, metavar="TOL",
                   help="relative Frobenius error ||W - GH|| / ||W|| allowed, in [0, 1)")


def _check_decompose(args: argparse.Namespace) -> None:
    if not 0 <= args.tolerance < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), got {args.tolerance:g}")


def _decompose(tensors: dict[str, np.ndarray], args: argparse.Namespace) -> Reduced:
    from nnr.reduction import decompose
    out, done = decompose(tensors, args.tolerance)
    ranks = [f"{w} rank {lr.rank}" for w, lr in done.items()]
    detail = f" ({_names(ranks)})" if ranks else ""
    return Reduced(out, f"decomposed {len(done)} of {len(_weights(tensors))} weights into "
                        f"<w>_G, <w>_H{detail}: {_count(_params(tensors))} -> "
                        f"{_count(_params(out))} parameters")


def _add_prune_channels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--groups", required=True, metavar="GROUPS.json",
                   help="the channel groups: which tensors shrink with each producer's output "
                        "channels (see docs/cli.md)")
    p.add_argument("--ratio", type=float, required=True, metavar="R",
                   help="fraction of the channels to remove")
    p.add_argument("--scope", choices=("group", "global"), default="group",
                   help="group: R of each group's channels (default); global: R of all "
                        "channels, ranked together")
    p.add_argument("--criterion", choices=("diffusion", "l1"), default="diffusion",
                   help="channel importance: diffusion (default) or the filters' L1 norm")
    p.add_argument("--min-keep", type=int, default=1, metavar="N",
                   help="channels every group keeps (default: 1)")


def _check_prune_channels(args: argparse.Namespace) -> None:
    _ratio(args.ratio)
    if args.min_keep < 1:
        raise ConfigError(f"--min-keep must be >= 1, got {args.min_keep}")
    args.channel_groups = read_groups(args.groups)


def _prune_channels(tensors: dict[str, np.ndarray], args: argparse.Namespace) -> Reduced:
    from nnr.reduction import prune_channels
    groups = args.channel_groups
    out, keep = prune_channels(tensors, groups, args.ratio, scope=args.scope,
                               criterion=args.criterion, min_keep=args.min_keep)
    before = sum(int(np.shape(tensors[g.producer])[0]) for g in groups)
    after = sum(len(k) for k in keep.values())
    p0, p1 = _params(tensors), _params(out)
    return Reduced(out, f"removed {_count(before - after)} of {_count(before)} channels in "
                        f"{len(groups)} groups: {_count(p0)} -> {_count(p1)} parameters "
                        f"(-{1 - p1 / p0 if p0 else 0:.1%})")


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("fold-bn", "fold batch norms into <w>_scaling and the bias (NNR_PT_BLOCK LS | BI)",
         _add_fold_bn, _check_fold_bn, _fold_bn, writes_blocks=True),
    Tool("local-scaling", "add least-squares <w>_scaling for the quantization nnr encode "
                          "will use", _add_local_scaling, _check_local_scaling, _local_scaling,
         writes_blocks=True),
    Tool("sparsify", "zero the smallest weights", _add_sparsify, _check_sparsify, _sparsify),
    Tool("micro-prune", "zero the weight blocks that matter least", _add_blockwise,
         _check_blockwise, _micro_prune),
    Tool("unify", "give weight blocks one shared magnitude (signs kept)", _add_blockwise,
         _check_blockwise, _unify),
    Tool("decompose", "replace weights by low-rank factors <w>_G, <w>_H where that saves "
                      "parameters", _add_decompose, _check_decompose, _decompose),
    Tool("prune-channels", "remove the least important output channels (a smaller dense "
                           "model)", _add_prune_channels, _check_prune_channels,
         _prune_channels),
)}


# ------------------------------------------------------------------------------ the command

def add_tools(parser: argparse.ArgumentParser) -> None:
    """One subcommand per tool under ``parser`` (``nnr reduce`` or ``python -m
    nnr.reduction``)."""
    from nnr.cli.main import adapter_names
    sub = parser.add_subparsers(dest="tool", required=True, metavar="tool",
                                parser_class=type(parser))
    for tool in TOOLS.values():
        p = sub.add_parser(tool.name, help=tool.help, description=tool.help[0].upper()
                           + tool.help[1:] + ".")
        p.add_argument("input", help="model to reduce (.npz, .safetensors, .pt/.pth, .onnx, "
                                     ".h5/.keras, an NNEF folder; '-' for an .npz on standard "
                                     "input)")
        p.add_argument("-o", "--output", required=True,
                       help="reduced model to write, in the format its name says ('-' for "
                            "standard output as .npz)")
        tool.add_options(p)
        p.add_argument("--format", choices=adapter_names(),
                       help="model format of the input, instead of guessing it from the name")
        p.add_argument("--output-format", choices=adapter_names(),
                       help="model format of the output, instead of guessing it from the name")
        p.add_argument("--no-progress", action="store_true",
                       help="no progress line on standard error (shown only on a terminal)")
    parser.set_defaults(run=run_reduce)


def add_reduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reduce", help="reduce a model's parameters (data-free NNR tools)",
                       description="Apply a data-free parameter-reduction tool of NNR to a "
                                   "model file and write the reduced model, in any format "
                                   "nnr reads and writes. Then code it with nnr encode.")
    add_tools(p)


def _reduced_model(model: Model, tensors: dict[str, np.ndarray]) -> Model:
    """``model`` with ``tensors``: tensors it had keep their dtype and role; new ones are
    float32 arrays."""
    out: dict[str, np.ndarray] = {}
    for name, arr in tensors.items():
        old = model.tensors.get(name)
        if old is not None and arr.dtype != old.dtype and arr.dtype.kind == "f" \
                and old.dtype.kind == "f":
            arr = arr.astype(old.dtype)
        out[name] = arr
    blocks = {w: {r: n for r, n in m.items() if n in out}
              for w, m in model.blocks.items() if w in out}
    return dataclasses.replace(
        model, tensors=out,
        dtypes={n: d for n, d in model.dtypes.items() if n in out},
        roles={n: r for n, r in model.roles.items() if n in out},
        blocks={w: m for w, m in blocks.items() if m})


def _structure_change(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray]
                      ) -> str | None:
    """How the tensors' names or shapes changed (None: values only)."""
    added = [n for n in after if n not in before]
    removed = [n for n in before if n not in after]
    reshaped = [n for n in after if n in before and np.shape(after[n]) != np.shape(before[n])]
    parts = [f"{what} {_names(names, 2)}" for what, names in (
        ("adds", added), ("removes", removed), ("reshapes", reshaped)) if names]
    return "; ".join(parts) or None


def _holds_graph(fmt: str, model: Model) -> bool:
    return fmt in _GRAPH_FORMATS or (fmt == "torch" and model.format == "torch"
                                     and bool(model.metadata.get("torchscript")))


def _check_blocks_output(path: str) -> None:
    if path == files.STDIO:
        raise CliError("--blocks must be a file, not '-'")
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise CliError(f"cannot write '{path}': No such file or directory")
    if target.is_dir():
        raise CliError(f"cannot write '{path}': Is a directory")


def _write_blocks(path: str, blocks: Mapping[str, Mapping[str, str]]) -> None:
    text = json.dumps(blocks, indent=1) + "\n"
    files.write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def run_reduce(args: argparse.Namespace) -> int:
    tool = TOOLS[args.tool]
    in_fmt = models.input_format(args.input, args.format)
    out_fmt = models.output_format(args.output, args.output_format)
    tool.check(args)
    blocks_path = getattr(args, "blocks", None) if tool.writes_blocks else None
    if blocks_path is not None:
        _check_blocks_output(blocks_path)
    progress = Progress(False if args.no_progress else None)
    with progress.stage(f"reading {args.input}"):
        model = models.read_model(args.input, in_fmt)
    with progress.stage(tool.name):
        result = tool.run(dict(model.tensors), args)
    reduced = _reduced_model(model, result.tensors)
    change = _structure_change(model.tensors, reduced.tensors)
    if change and _holds_graph(out_fmt, model):
        raise CliError(f"{tool.name} {change}: a {out_fmt} model file keeps its graph and "
                       f"cannot hold that; write {_TENSOR_FILES} instead")
    with progress.stage(f"writing {args.output}"):
        models.write_model(args.output, reduced, out_fmt)
    if blocks_path is not None:
        try:
            _write_blocks(blocks_path, result.blocks or {})
        except BaseException:
            if args.output != files.STDIO:
                _remove(args.output)
            raise
    if args.output != files.STDIO:
        where = f"; blocks in {blocks_path}" if blocks_path else ""
        print(f"wrote {args.output}: {result.summary}{where}")
    return 0


def alias_main(argv: Sequence[str] | None = None) -> int:
    """``python -m nnr.reduction TOOL ...``: ``nnr reduce TOOL ...`` under another name."""
    from nnr.cli.main import Parser, run

    def build() -> Parser:
        parser = Parser(prog=ALIAS_PROG, description="The data-free parameter-reduction tools "
                                                     "of NNR (the same as 'nnr reduce').")
        add_tools(parser)
        return parser
    return run(argv, build, ALIAS_PROG)
