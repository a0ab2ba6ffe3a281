"""``nnr``: the command-line face of nnr (entry point ``nnr.cli.main:main``).

Every failure is reported as one line on standard error, ``nnr: error: ...``, never a traceback:
exit status 1 for nnr errors (bad streams, unsupported tools, bad options), unreadable inputs
and failed verifications, 2 for usage errors. Set ``NNR_DEBUG=1`` to get the traceback of an
unexpected exception.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from nnr.cli import commands, reduce, verify
from nnr.cli.files import CliError, CliUsageError
from nnr.errors import NnrError

PROG = "nnr"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """Reports usage errors as one line (raises instead of printing usage and exiting)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliUsageError(f"{message} (see '{self.prog} --help')")


def _version() -> str:
    from importlib import metadata
    try:
        return metadata.version("nnr")
    except metadata.PackageNotFoundError:
        import nnr
        return str(getattr(nnr, "__version__", "unknown"))


def _encode_defaults() -> dict[str, object]:
    """Field defaults of nnr.EncodeConfig, for --help (empty when it cannot be introspected)."""
    import dataclasses

    import nnr
    config = getattr(nnr, "EncodeConfig", None)
    if config is None or not dataclasses.is_dataclass(config):
        return {}
    return {f.name: f.default for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING}


def adapter_names() -> list[str]:
    from nnr.adapters._registry import names
    return names()


def _qp_pair(text: str) -> tuple[str, int]:
    name, sep, qp = text.rpartition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, int(qp)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=QP, got '{text}'") from None


class _QpPerTensor(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        table = dict(getattr(namespace, self.dest, None) or {})
        name, qp = values
        table[name] = qp
        setattr(namespace, self.dest, table)


def _drop(text: str) -> float:
    """'0.1%' -> 0.001, '0.002' -> 0.002."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or percentage: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


#: Allowed levels of each map: (bound text, test).
_MAP_RANGES = {"sparsification": (">= 0", lambda v: v >= 0),
               "pruning": ("in [0, 1]", lambda v: 0 <= v <= 1),
               "unification": ("in [0, 1]", lambda v: 0 <= v <= 1),
               "decomposition": ("in [0, 1)", lambda v: 0 <= v < 1)}


def _map_levels(text: str) -> tuple[str, tuple[float, ...]]:
    """'decomposition=0.1,0.3' -> ('decomposition', (0.1, 0.3))."""
    tool, sep, values = text.partition("=")
    if not sep or tool not in _MAP_RANGES:
        raise argparse.ArgumentTypeError(f"expected TOOL=L1,L2,... with TOOL one of "
                                         f"{', '.join(_MAP_RANGES)}, got {text!r}")
    try:
        levels = tuple(float(v) for v in values.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels are numbers, got {text!r}") from None
    bound, ok = _MAP_RANGES[tool]
    for v in levels:
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{tool} levels must be {bound}, got {v:g}")
    return tool, levels


class _MapLevels(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        table = dict(getattr(namespace, self.dest, None) or {})
        tool, levels = values
        table[tool] = levels
        setattr(namespace, self.dest, table)


def _add_encode(sub: argparse._SubParsersAction) -> None:
    d = _encode_defaults()

    def h(text: str, field: str) -> str:
        return f"{text} (default: {d[field]})" if field in d else text

    p = sub.add_parser("encode", help="encode a model or tensors into an NNR bitstream",
                       description="Encode a model (.npz, .safetensors, .pt/.pth, .onnx, "
                                   ".h5/.keras, an NNEF folder) into an NNR bitstream "
                                   "(ISO/IEC 15938-17) that carries its topology. Options "
                                   "left out keep nnr's defaults.",
                       argument_default=argparse.SUPPRESS)
    p.add_argument("input", help="model to encode; its format is chosen by the file name "
                                 "(see --format)")
    p.add_argument("-o", "--output", required=True,
                   help="bitstream to write (.nnr or .nnc; '-' for standard output)")
    q = p.add_argument_group("quantization")
    q.add_argument("--qp", type=int, metavar="QP",
                   help=h("quantization parameter of tensors with 2 or more dimensions", "qp"))
    q.add_argument("--qp-density", type=int, metavar="N",
                   help=h("the step size doubles every 2**N qp steps", "qp_density"))
    q.add_argument("--nonweight-qp", type=int, metavar="QP",
                   help=h("qp of 1-D tensors (biases, batch-norm)", "nonweight_qp"))
    q.add_argument("--qp-per-tensor", metavar="NAME=QP", type=_qp_pair, action=_QpPerTensor,
                   help="qp of one tensor, overriding --qp/--nonweight-qp (repeatable)")
    q.add_argument("--dq", action=argparse.BooleanOptionalAction,
                   help=h("dependent (trellis-coded) quantization", "dq"))
    q.add_argument("--codebook", choices=["off", "on", "auto"],
                   help=h("codebook quantization: never, always, or where it is smaller",
                          "codebook"))
    q.add_argument("--stochastic", choices=["binary", "ternary"],
                   help="stochastic binary {-d, +d} or ternary {-d, 0, +d} quantization of "
                        "the tensors with 2 or more dimensions (d per tensor, unbiased "
                        "rounding, no DQ; 1-D tensors as usual)")
    q.add_argument("--seed", type=int, metavar="N",
                   help=h("random seed of --stochastic: the same input and seed give the "
                          "same bytes", "seed"))
    q.add_argument("--bit-depth", type=int, metavar="N",
                   help="integer-aligned quantization as NNCodec's int_quant_bw: per tensor "
                        "the qp that fits its levels into N-bit integers (2..31; 1-D "
                        "tensors at least 8 bits), no DQ; replaces --qp/--nonweight-qp")
    c = p.add_argument_group("entropy coding")
    c.add_argument("--scan-order", type=int, choices=range(5),
                   help=h("0 raster, 1..4 blocks of 8x8 .. 64x64 with entry points",
                          "scan_order"))
    c.add_argument("--profile", type=int, choices=(0, 1),
                   help=h("general_profile_idc: 0 edition 1, 1 edition 2", "profile"))
    c.add_argument("--no-param-opt", dest="param_opt", action="store_false",
                   help="do not optimise the context initialisation per tensor")
    c.add_argument("--row-skip", dest="row_skip", action="store_true",
                   help="signal all-zero rows once instead of coding them (profile 1)")
    c.add_argument("--cabac-unary-length-minus1", type=int, metavar="N",
                   help=h("unary part of the level binarization, minus 1",
                          "cabac_unary_length_minus1"))
    q.add_argument("--lambda-scale", type=float, metavar="X",
                   help=h("rate-distortion optimised quantization: weight of the estimated "
                          "bits against the error (0: off)", "lambda_scale"))
    p.add_argument("--threads", type=int, metavar="N",
                   help="worker threads (default: all cores)")
    t = p.add_argument_group("targets (search per-tensor qps)")
    t.add_argument("--max-drop", type=_drop, metavar="X[%]",
                   help="smallest stream whose metric (from --eval) falls by at most X "
                        "(0.1%% = 0.001) from the original's")
    t.add_argument("--eval", metavar="SCRIPT.py",
                   help="Python file defining evaluate(tensors: dict[str, ndarray]) -> float "
                        "(higher is better), used by --max-drop and --performance-maps; it "
                        "may also define distortion(tensors) -> float (>= 0, e.g. the KL "
                        "divergence of the outputs), which sharpens the --max-drop search")
    t.add_argument("--max-evaluations", type=int, metavar="N",
                   help="--max-drop search budget: calls of evaluate (default: number of "
                        "weight tensors + 1-D tensor roles + 60)")
    t.add_argument("--size", type=int, metavar="BYTES",
                   help="the finest stream that fits in BYTES")
    p.add_argument("--stream", action="store_true",
                   help="read an .npz/.safetensors tensor by tensor and write units as they "
                        "are made (models larger than memory; no topology, blocks or targets)")
    m = p.add_argument_group("model")
    m.add_argument("--format", choices=adapter_names(),
                   help="model format of the input, instead of guessing it from the name")
    m.add_argument("--blocks", metavar="{auto,none,BLOCKS.json}",
                   help="auto: code each weight with its bias and following batch-norm in "
                        "one NNR_PT_BLOCK unit; BLOCKS.json: the blocks 'nnr reduce fold-bn' "
                        "or 'local-scaling' wrote (default: none)")
    m.add_argument("--lossless", action="store_true",
                   help="store float tensors unquantized (NNR_PT_RAW_FLOAT); integer tensors "
                        "are always lossless")
    r = p.add_argument_group("parameter reduction")
    r.add_argument("--low-rank", type=float, metavar="TOL",
                   help="code each weight whose low-rank decomposition within the relative "
                        "Frobenius error TOL (in [0, 1)) saves parameters as two factors "
                        "(DC tool; decoders recompose it)")
    r.add_argument("--performance-maps", action="store_true",
                   help="measure the metric of --eval at several levels of each reduction "
                        "tool and write the performance maps into the stream")
    r.add_argument("--map-levels", type=_map_levels, action=_MapLevels, metavar="TOOL=L1,L2",
                   help="levels of one map (repeatable; then only the maps given): "
                        "sparsification thresholds, pruning ratios (with --groups), "
                        "unification ratios, decomposition tolerances")
    r.add_argument("--layer-maps", nargs="?", const="all", metavar="W1,W2",
                   help="also measure per-layer maps (each tool applied to one layer) and "
                        "write them in NNR_LPS units before the layers' NDUs: of every "
                        "weight, or of the weights named (NNCodec 2.1.3 cannot decode "
                        "streams with LPS units)")
    r.add_argument("--metric", metavar="NAME",
                   help="name of the metric written with the maps (default: top1); also the "
                        "key read when evaluate() returns a dict")
    r.add_argument("--groups", metavar="GROUPS.json",
                   help="channel groups for the pruning map (as for nnr reduce "
                        "prune-channels)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress line on standard error (shown only on a terminal)")
    p.set_defaults(run=commands.run_encode)


def _add_decode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode an NNR bitstream into a model or tensors",
                       description="Decode an NNR bitstream into a model file of the format "
                                   "the output's name (or --format) says: .npz, .safetensors, "
                                   ".pt/.pth, .onnx, .h5/.keras, an NNEF folder. Several "
                                   "streams are an incremental sequence decoded in order into "
                                   "an .npz; their tensors are keyed '<step>/<name>'.")
    p.add_argument("inputs", nargs="+", metavar="input",
                   help="bitstream(s) (.nnr/.nnc; '-' for standard input)")
    p.add_argument("-o", "--output", required=True,
                   help="model to write (.npz, .safetensors, .pt, .onnx, .h5, an NNEF folder "
                        "...; '-' for standard output as .npz)")
    p.add_argument("--format", choices=adapter_names(),
                   help="model format of the output, instead of guessing it from the name")
    p.add_argument("--tensor", action="append", metavar="NAME",
                   help="decode only this tensor (repeatable; random access: other units are "
                        "skipped) into an .npz or .safetensors")
    p.add_argument("--stream", action="store_true",
                   help="decode one unit at a time into an .npz or .safetensors (bounded "
                        "memory for models larger than memory)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="decoder threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress line on standard error (shown only on a terminal)")
    p.set_defaults(run=commands.run_decode)


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the units, tensors and tools of a bitstream",
                       description="Show the NNR units, the coded tensors (shape, dtype, "
                                   "payload type, qp, dq, scan order, codebook, coded size) and "
                                   "the coding tools of a bitstream. Several streams are an "
                                   "incremental sequence: the last one is shown, after the "
                                   "earlier ones are decoded (TCA and HDSP need them).")
    p.add_argument("inputs", nargs="+", metavar="input",
                   help="bitstream(s) (.nnr/.nnc; '-' for standard input)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(run=commands.run_info)


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="decode a bitstream and check the result",
                       description="Decode a bitstream and check every tensor, either against "
                                   "a conformance manifest (sha256 of the decoded tensors) or "
                                   "against the original tensors. Exit status 0 only when "
                                   "everything matches.")
    p.add_argument("input", help="bitstream (.nnr/.nnc; '-' for standard input)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--manifest", metavar="MANIFEST.json",
                     help="conformance manifest (tests/vectors/manifest.json format)")
    how.add_argument("--against", metavar="ORIGINAL.npz",
                     help="the tensors that were encoded")
    p.add_argument("--id", help="vector id in the manifest (default: found by the stream's "
                                "sha256)")
    p.add_argument("--max-abs-error", type=float, metavar="X",
                   help="with --against: fail when a tensor's max abs error exceeds X")
    p.set_defaults(run=verify.run_verify)


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Encode, decode and inspect MPEG NNR "
                                           "(ISO/IEC 15938-17) neural network bitstreams.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command",
                                parser_class=Parser)
    for add in (_add_encode, _add_decode, _add_info, _add_verify, reduce.add_reduce):
        add(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(message: str, status: int, prog: str = PROG) -> int:
    sys.stderr.write(f"{prog}: error: {_one_line(message)}\n")
    return status


def _run(argv: Sequence[str] | None, build: Callable[[], Parser], prog: str) -> int:
    try:
        args = build().parse_args(argv)
        return int(args.run(args))
    except CliUsageError as exc:
        return _error(str(exc), EXIT_USAGE, prog)
    except CliError as exc:
        return _error(str(exc), EXIT_ERROR, prog)
    except NnrError as exc:
        return _error(f"{type(exc).__name__}: {exc}", EXIT_ERROR, prog)
    except MemoryError:
        return _error("out of memory", EXIT_ERROR, prog)


def run(argv: Sequence[str] | None, build: Callable[[], Parser], prog: str = PROG) -> int:
    """Parse ``argv`` with the parser ``build()`` makes, run the chosen command and return
    the exit status; every failure is one line on standard error starting with ``prog``."""
    try:
        return _run(argv, build, prog)
    except KeyboardInterrupt:
        return _error("interrupted", 130, prog)
    except BrokenPipeError:
        # The reader went away (e.g. `nnr info x.nnr | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # never a traceback for a user, unless asked for
        if os.environ.get("NNR_DEBUG"):
            raise
        return _error(f"internal error: {type(exc).__name__}: {exc} "
                      "(set NNR_DEBUG=1 for a traceback)", EXIT_ERROR, prog)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nnr`` command; return the exit status (the console script exits with it)."""
    return run(argv, build_parser)


if __name__ == "__main__":
    sys.exit(main())
