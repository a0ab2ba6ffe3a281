"""How many bins DeepCABAC codes per weight: the work a decoder of the stream cannot avoid.

    python benchmarks/bin_stats.py [--models minilm,efficientnet,resnet18] [--qp -38]

Quantizes every tensor as benchmarks/bench.py's generic coders do (DQ, ``--qp`` for weights,
-75 for 1-D tensors, the levels nnr codes) and counts the bins of nnr's binarization with
cabac_unary_length 11 (NNCodec's default): significance, sign, greater-than flags and the
remainder's context-coded prefix (context-coded bins) and its suffix (bypass bins). With DQ the
coded level of a multiplier k is ceil(|k| / 2) (the DQ state's parity is that of |k|).
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

NUM_GTX = 11


def bins(levels: np.ndarray) -> tuple[int, int]:
    """Context-coded and bypass bins of these coded levels (absolute values)."""
    q = levels.astype(np.int64)
    nz = q[q != 0]
    r = nz - 1
    ctx = q.size + nz.size + np.minimum(r + 1, NUM_GTX).sum()  # sig, sign, greater-than flags
    v = r[r >= NUM_GTX] - NUM_GTX  # remainder: lg ones and a zero, then lg bypass bins
    lg = np.floor(np.log2(v + 1)).astype(np.int64)
    return int(ctx + (lg + 1).sum()), int(lg.sum())


def main() -> None:
    import bench
    from nnr.quantization import quantize
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,efficientnet,resnet18")
    ap.add_argument("--qp", type=int, default=-38)
    args = ap.parse_args()
    makers = {"minilm": bench.minilm, "efficientnet": bench.efficientnet, "resnet18": bench.resnet18}
    print(f"| model | weights | median coded level | levels with a remainder | context-coded bins / weight"
          f" | bypass bins / weight |  (qp {args.qp}, DQ, cabac_unary_length {NUM_GTX})")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        n = ctx = byp = rem = 0
        hist = np.zeros(4097, np.int64)  # coded levels, the last bin holding 4096 and above
        for w in makers[name]().values():
            rows = w.shape[0] if w.ndim else 1
            k = quantize(w, rows, max(1, w.size // max(rows, 1)), qp=args.qp if w.ndim > 1 else -75,
                         qp_density=2, dq=True)
            q = (np.abs(k.astype(np.int64)) + 1) // 2
            c, b = bins(q)
            n, ctx, byp = n + q.size, ctx + c, byp + b
            rem += int((q > NUM_GTX).sum())
            hist += np.bincount(np.minimum(q, 4096), minlength=4097)
        median = int(np.searchsorted(np.cumsum(hist), (n + 1) // 2))
        print(f"| {name} | {n:,} | {median} | {100 * rem / n:.1f} % | {ctx / n:.2f} | {byp / n:.2f} |")


if __name__ == "__main__":
    main()
