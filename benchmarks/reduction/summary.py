"""Markdown tables from benchmarks/results/reduction_*.json (for docs/reduction.md).

    python benchmarks/reduction/summary.py fashion_cnn top1 0.89 0.88 0.85 0.80
    python benchmarks/reduction/summary.py efficientnet_lite0 kl 0.01 0.03 0.1

For every series: its points (bytes / metric), and per target the smallest stream that
reaches it (metric >= target for accuracies, <= target for "kl").
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def best(points, metric, target, lower):
    ok = [p for p in points if (p["metrics"][metric] <= target if lower
                                else p["metrics"][metric] >= target)]
    return min(ok, key=lambda p: p["bytes"]) if ok else None


def main(argv: list[str]) -> int:
    model, metric, *targets = argv
    targets = [float(t) for t in targets]
    lower = metric == "kl"
    data = json.loads((RESULTS / f"reduction_{model}.json").read_text())
    print(f"reference: {data['reference']}, float32 bytes {data['float32_bytes']}\n")
    head = " | ".join(f"{'<=' if lower else '>='} {t:g}" for t in targets)
    print(f"| series | points (bytes: {metric}) | {head} |")
    print("|---|---|" + "---|" * len(targets))
    for key, s in data["series"].items():
        pts = sorted(s["points"], key=lambda p: p["bytes"])
        shown = ", ".join(f"{p['bytes']}: {p['metrics'][metric]:.4g}" for p in pts)
        cells = []
        for t in targets:
            b = best(pts, metric, t, lower)
            cells.append(f"{b['bytes']} (qp {b['qp']})" if b else "-")
        print(f"| {key} | {shown} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
