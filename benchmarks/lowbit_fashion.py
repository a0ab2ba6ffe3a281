"""Low-bit quantization on the Fashion-MNIST CNN: stochastic binary / ternary weights and
integer-aligned (NNCodec ``int_quant_bw``) bit depths, against nnr's default coding.

    PYTHONPATH=src python benchmarks/lowbit_fashion.py [--seeds 10] [--bits 8,6,4]

Prints a markdown table: stream bytes, share of the float32 size, top-1 on the 10k test images
and top-1 agreement with the uncompressed model. Stochastic rows are the mean +- standard
deviation (and range) over seeds 0..N-1; the 1-D tensors (batch norm, biases) keep nnr's
default quantization there (nonweight_qp -75, DQ), and no fine-tuning is done. Needs the
evaluator of benchmarks/eval (torch, Debian's dataset-fashion-mnist).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import nnr  # noqa: E402
from benchmarks.eval import load, unavailable  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--bits", default="8,6,4")
    args = ap.parse_args(argv)
    reason = unavailable("fashion_cnn")
    if reason:
        print(f"fashion_cnn unavailable: {reason}", file=sys.stderr)
        return 1
    tensors, evaluate = load("fashion_cnn")
    raw = sum(t.nbytes for t in tensors.values())
    ref = evaluate.reference
    rows = [("float32", raw, f"{ref['top1']:.4f}", "1.0000")]

    def row(label: str, options: dict) -> None:
        data = nnr.encode(tensors, **options)
        m = evaluate(nnr.decode(data))
        rows.append((label, len(data), f"{m['top1']:.4f}", f"{m['agreement']:.4f}"))

    row("default (qp -38, DQ)", {})
    for bits in [int(b) for b in args.bits.split(",") if b]:
        row(f"bit_depth={bits}", {"bit_depth": bits})
    for mode in ("binary", "ternary"):
        sizes, top1, agree = [], [], []
        for seed in range(args.seeds):
            data = nnr.encode(tensors, stochastic=mode, seed=seed)
            m = evaluate(nnr.decode(data))
            sizes.append(len(data))
            top1.append(m["top1"])
            agree.append(m["agreement"])
        rows.append((f"stochastic={mode} ({args.seeds} seeds)", int(np.mean(sizes)),
                     f"{np.mean(top1):.4f} +- {np.std(top1):.4f} "
                     f"({min(top1):.4f}..{max(top1):.4f})",
                     f"{np.mean(agree):.4f}"))
    print("| setting | bytes | of float32 | top-1 | agreement |")
    print("|---|---|---|---|---|")
    for label, size, top1, agree in rows:
        print(f"| {label} | {size} | {100.0 * size / raw:.2f} % | {top1} | {agree} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
