"""Command line for the data-free reduction tools: model.npz in, reduced model.npz out.

    python -m nnr.reduction fold-bn model.npz -o folded.npz [--eps 1e-5] [--blocks blocks.json]
    python -m nnr.reduction sparsify model.npz -o sparse.npz (--ratio 0.5 | --threshold 0.5)
    python -m nnr.reduction unify model.npz -o unified.npz --ratio 0.3 [--block 2,2,0]
    python -m nnr.reduction micro-prune model.npz -o pruned.npz --ratio 0.3 [--block 2,2,0]
    python -m nnr.reduction local-scaling model.npz -o ls.npz [--qp -38] [--blocks blocks.json]
    python -m nnr.reduction decompose model.npz -o gh.npz --tolerance 0.1

``fold-bn`` and ``local-scaling`` write the NNR_PT_BLOCK structure to ``--blocks`` (JSON for
``nnr.EncodeConfig.blocks``). Low-rank coding inside the codec is the encoder option
``low_rank`` (``nnr.encode(..., low_rank=0.1)``). Errors: one line, exit status 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nnr.errors import NnrError

PROG = "python -m nnr.reduction"


def _block(text: str) -> tuple[int | None, ...]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("block is three integers, e.g. 2,2,0") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("block is three integers, e.g. 2,2,0")
    return tuple(None if p == 0 else p for p in parts)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="tool", required=True)

    def tool(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_)
        s.add_argument("input", type=Path)
        s.add_argument("-o", "--output", type=Path, required=True)
        return s

    s = tool("fold-bn", "fold batch norms into <w>_scaling and the bias")
    s.add_argument("--eps", type=float, default=1e-5)
    s.add_argument("--blocks", type=Path, help="write EncodeConfig.blocks here (JSON)")
    s = tool("sparsify", "zero small weights")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratio", type=float)
    g.add_argument("--threshold", type=float, help="zero |w| < threshold * RMS(w)")
    s.add_argument("--scope", choices=("tensor", "global"), default="tensor")
    for name, what in (("unify", "unify weight blocks"), ("micro-prune", "zero weight blocks")):
        s = tool(name, what)
        s.add_argument("--ratio", type=float, required=True, help="fraction of blocks")
        s.add_argument("--block", type=_block, default=(2, 2, None),
                       help="block size out,in,rest (0 = whole axis; default 2,2,0)")
    s = tool("local-scaling", "add least-squares <w>_scaling for the given quantization")
    s.add_argument("--qp", type=int, default=-38)
    s.add_argument("--no-dq", dest="dq", action="store_false")
    s.add_argument("--blocks", type=Path, help="read and write EncodeConfig.blocks (JSON)")
    s = tool("decompose", "replace weights by <w>_G, <w>_H where that saves parameters")
    s.add_argument("--tolerance", type=float, required=True)
    return p


def _run(args: argparse.Namespace) -> dict[str, np.ndarray]:
    from nnr import reduction as r
    with np.load(args.input) as z:
        tensors = {k: z[k] for k in z.files}
    if args.tool == "fold-bn":
        out, blocks = r.fold_batch_norm(tensors, r.find_batch_norms(tensors, args.eps))
        _write_blocks(args.blocks, blocks)
        return out
    if args.tool == "sparsify":
        return r.magnitude_sparsify(tensors, args.ratio, threshold=args.threshold,
                                    scope=args.scope)
    if args.tool == "unify":
        return r.unify(tensors, args.ratio, block=args.block)[0]
    if args.tool == "micro-prune":
        return r.micro_prune(tensors, args.ratio, block=args.block)[0]
    if args.tool == "local-scaling":
        old = json.loads(args.blocks.read_text()) if args.blocks and args.blocks.exists() \
            else None
        out, blocks = r.add_local_scaling(tensors, qp=args.qp, dq=args.dq, blocks=old)
        _write_blocks(args.blocks, blocks)
        return out
    return r.decompose(tensors, args.tolerance)[0]


def _write_blocks(path: Path | None, blocks: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(blocks, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = _run(args)
        tmp = args.output.with_name(args.output.name + ".tmp.npz")
        np.savez(tmp, **out)
        tmp.replace(args.output)
    except (NnrError, OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
