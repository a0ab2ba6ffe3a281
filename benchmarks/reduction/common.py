"""Shared pieces of the reduction benchmarks: the results file (JSON, merged series by series
so that tools can be run separately), coding + evaluation of one point, and the plot."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

import nnr  # noqa: E402
from nnr.decoder import decode_recomposed  # noqa: E402
from nnr.reduction import postprocess  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
#: Tool name of control series (drawn dotted in every panel).
CONTROL = "control: fine-tuning without a tool"


class Results:
    """``benchmarks/results/reduction_<model>.json``: ``{"model", "metric", "reference",
    "float32_bytes", "environment", "series": {key: {"tool", "setting", "info", "points"}}}``;
    a point is ``{"qp", "bytes", "metrics", "seconds"}``."""

    def __init__(self, model: str, metric: str) -> None:
        self.path = RESULTS / f"reduction_{model}.json"
        self.data: dict[str, Any] = {"model": model, "metric": metric, "series": {}}
        if self.path.exists():
            self.data.update(json.loads(self.path.read_text()))
        self.data["environment"] = {"python": platform.python_version(),
                                    "numpy": np.__version__, "nnr": nnr.__version__,
                                    "cpus": os.cpu_count()}

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def series(self, key: str, tool: str, setting: Mapping[str, Any], points: list[dict],
               info: Mapping[str, Any] | None = None) -> None:
        self.data["series"][key] = {"tool": tool, "setting": dict(setting),
                                    "info": dict(info or {}), "points": points}
        self.save()

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_plain) + "\n")
        tmp.replace(self.path)


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


def point(tensors: Mapping[str, np.ndarray], evaluate: Callable, *, qp: int,
          post: Callable[[dict], dict] | None = None, **options: Any) -> dict:
    """Code ``tensors`` at ``qp`` (``options``: further encoder options), decode (recomposing
    decomposed weights), post-process (``post``: e.g. unfold batch norms) and evaluate."""
    t0 = time.perf_counter()
    data = nnr.encode(tensors, qp=qp, **options)
    dec = decode_recomposed(data) if options.get("low_rank") is not None else nnr.decode(data)
    model = post(dec) if post is not None else postprocess(dec)
    metrics = evaluate(model)
    return {"qp": qp, "bytes": len(data), "metrics": metrics,
            "seconds": round(time.perf_counter() - t0, 2)}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def plot(model: str, metric: str, *, log_y: bool = False, higher_is_better: bool = True,
         title: str = "") -> Path:
    """One panel per tool: metric against coded bytes, every setting of the tool as a line,
    quantization alone as the black reference line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = json.loads((RESULTS / f"reduction_{model}.json").read_text())
    series = data["series"]
    tools = [t for t in dict.fromkeys(s["tool"] for s in series.values())
             if t not in ("quantization", CONTROL)]
    cols = 3
    rows = max(1, -(-len(tools) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    base = [s for s in series.values() if s["tool"] == "quantization"]
    for ax, tool in zip(axes.ravel(), tools):
        for b in base:
            _line(ax, b, metric, "k", "quantization only", lw=2)
        for key, s in series.items():
            if s["tool"] == CONTROL:
                _line(ax, s, metric, "0.6", key.replace(":", " "), lw=1, ls=":")
        for key, s in series.items():
            if s["tool"] == tool:
                _line(ax, s, metric, None, key.replace(":", " "))
        ax.set_title(tool)
        ax.set_xlabel("stream bytes")
        ax.set_ylabel(metric)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(tools):]:
        ax.axis("off")
    fig.suptitle(title or f"{model}: {metric} vs bytes per reduction tool (with quantization)")
    fig.tight_layout()
    out = RESULTS / f"reduction_{model}.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _line(ax, s, metric, color, label, lw=1.2, ls="-"):
    pts = sorted(s["points"], key=lambda p: p["bytes"])
    if not pts:
        return
    x = [p["bytes"] for p in pts]
    y = [max(p["metrics"][metric], 1e-7) for p in pts]
    ax.plot(x, y, marker="o", ms=3, color=color, lw=lw, ls=ls, label=label)
