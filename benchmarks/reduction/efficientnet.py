"""Data-free reduction tools on EfficientNet-Lite0 (benchmarks/eval/efficientnet_lite0.py, 20
labelled ImageNet images from foolbox): rate against KL divergence from the uncompressed
model's outputs (and top-1 of 20), each tool at a few settings combined with quantization.
No training data, so no fine-tuning here.

    nice -n 10 python benchmarks/reduction/efficientnet.py [tool ...]     # default: all
    tools: quantization bnf ls sparsify prune micro unify lowrank

Pruning removes expansion channels inside the MBConv blocks (expand conv rows, their batch
norms, the depthwise conv, the project conv's input columns); the rate is that of the smaller
model, the metric is measured on the full-size model with the removed channels' project
columns zeroed (the same function, as the evaluator loads a fixed architecture).
"""
from __future__ import annotations

import re
import sys

import numpy as np

from common import Results, log, plot, point  # noqa: E402 (also sets sys.path)
from benchmarks.eval import efficientnet_lite0 as en  # noqa: E402
from nnr.reduction import (  # noqa: E402
    BatchNorm, ChannelGroup, Slice, add_local_scaling, decompose, find_batch_norms,
    fold_batch_norm, magnitude_sparsify, micro_prune, postprocess, prune_channels, sparsity,
    unify)

MODEL = "efficientnet_lite0"
QPS = [-22, -26, -30, -34, -38]
TOOL_QPS = [-26, -30, -34]
EPS = 1e-3


def groups(t) -> list[ChannelGroup]:
    out = []
    for name in t:
        m = re.match(r"(_blocks\.\d+\.)_expand_conv\.weight$", name)
        if not m:
            continue
        p = m.group(1)
        bn = [Slice(f"{p}_bn{i}.{s}") for i in (0, 1)
              for s in ("weight", "bias", "running_mean", "running_var")]
        weigh = BatchNorm(*(f"{p}_bn0.{s}" for s in ("weight", "bias", "running_mean",
                                                      "running_var")), eps=EPS)
        out.append(ChannelGroup(name, tuple(bn[:4]) + (Slice(p + "_depthwise_conv.weight"),)
                                + tuple(bn[4:]) + (Slice(p + "_project_conv.weight", 1),),
                                bn=weigh))
    return out


def curve(tensors, ev, qps, **kw):
    pts = []
    for qp in qps:
        p = point(tensors, ev, qp=qp, **kw)
        m = p["metrics"]
        log(f"  qp {qp}: {p['bytes']} B kl {m['kl']:.5f} correct {m['correct']:.0f}")
        pts.append(p)
    return pts


def run_quantization(res, t, ev):
    res.series("quantization", "quantization", {"dq": True}, curve(t, ev, QPS))


def run_bnf(res, t, ev):
    bns = find_batch_norms(t, EPS)
    folded, blocks = fold_batch_norm(t, bns)
    post = lambda d: postprocess(d, batch_norms=bns)       # noqa: E731
    res.series("bnf", "batch-norm folding", {"eps": EPS},
               curve(folded, ev, QPS, blocks=blocks, post=post),
               {"batch_norms": len(bns), "tensors_before": len(t),
                "tensors_after": len(folded)})


def run_ls(res, t, ev):
    bns = find_batch_norms(t, EPS)
    folded, blocks = fold_batch_norm(t, bns)
    post = lambda d: postprocess(d, batch_norms=bns)       # noqa: E731
    pts = []
    for qp in QPS:
        ls, b2 = add_local_scaling(folded, qp=qp, blocks=blocks)
        pts += curve(ls, ev, [qp], blocks=b2, post=post)
    res.series("bnf:+ls (data-free)", "local scaling", {"fit": "least squares"}, pts)


def run_sparsify(res, t, ev):
    for r in (0.3, 0.5, 0.7):
        s = magnitude_sparsify(t, r)
        log(f"magnitude {r}")
        res.series(f"magnitude:{r}", "sparsification (magnitude)", {"ratio": r},
                   curve(s, ev, TOOL_QPS), {"sparsity": sparsity(s)})


def _emulated(t, gs, kept):
    """The full-size model computing what the pruned one computes."""
    out = dict(t)
    for g in gs:
        proj = g.members[-1].name
        w = out[proj].copy()
        drop = np.setdiff1d(np.arange(w.shape[1]), kept[g.producer])
        w[:, drop] = 0
        out[proj] = w
    return out


def run_prune(res, t, ev):
    gs = groups(t)
    for crit in ("diffusion", "l1"):
        for r in (0.1, 0.25):
            small, kept = prune_channels(t, gs, r, criterion=crit)
            full = _emulated(t, gs, kept)
            pts = []
            for qp in TOOL_QPS:
                coded = point(small, lambda _: {}, qp=qp)
                metric = point(full, ev, qp=qp)["metrics"]
                coded["metrics"] = metric
                log(f"  prune {crit} {r} qp {qp}: {coded['bytes']} B kl {metric['kl']:.5f}")
                pts.append(coded)
            res.series(f"{crit}:{r}", f"pruning expansion channels ({crit}), no FT",
                       {"ratio": r, "criterion": crit}, pts,
                       {"parameters_after": int(sum(a.size for a in small.values())),
                        "parameters_before": int(sum(a.size for a in t.values()))})


def run_micro(res, t, ev):
    for r in (0.2, 0.4):
        p, _ = micro_prune(t, r)
        res.series(f"micro-pruning:{r}", "micro-structured pruning (2x2xk, magnitude)",
                   {"ratio": r}, curve(p, ev, TOOL_QPS), {"sparsity": sparsity(p)})


def run_unify(res, t, ev):
    for r in (0.3, 0.6):
        u, _ = unify(t, r)
        res.series(f"unification:{r}", "unification (2x2xk, magnitude)", {"ratio": r},
                   curve(u, ev, TOOL_QPS))


def run_lowrank(res, t, ev):
    for tol in (0.05, 0.1, 0.2):
        coded, done = decompose(t, tol)
        info = {"decomposed": len(done),
                "parameters_after": int(sum(a.size for a in coded.values())),
                "parameters_before": int(sum(a.size for a in t.values()))}
        log(f"low rank {tol}: {info}")
        res.series(f"low rank:{tol}", "low-rank decomposition (DC)", {"tolerance": tol},
                   curve(t, ev, TOOL_QPS, low_rank=tol), info)


def pointwise(t) -> list[str]:
    """The 1 x 1 convolutions and the classifier: 4.2 M of the 4.7 M parameters. The stem and
    the depthwise convolutions (9 weights per channel) break under every data-free tool."""
    return [n for n, a in t.items() if (a.ndim == 4 and a.shape[2:] == (1, 1)) or a.ndim == 2]


def run_pointwise(res, t, ev):
    names = pointwise(t)
    n_params = int(sum(t[n].size for n in names))
    for r in (0.3, 0.5):
        s = magnitude_sparsify(t, r, names=names)
        res.series(f"magnitude 1x1+fc:{r}", "sparsification (magnitude)", {"ratio": r,
                   "tensors": "1x1 convs + fc"}, curve(s, ev, TOOL_QPS),
                   {"sparsity_all_weights": sparsity(s), "parameters_touched": n_params})
    for r in (0.2, 0.4):
        p, _ = micro_prune(t, r, names=names)
        res.series(f"micro-pruning 1x1+fc:{r}", "micro-structured pruning (2x2xk, magnitude)",
                   {"ratio": r, "tensors": "1x1 convs + fc"}, curve(p, ev, TOOL_QPS))
    for r in (0.3, 0.6):
        u, _ = unify(t, r, names=names)
        res.series(f"unification 1x1+fc:{r}", "unification (2x2xk, magnitude)",
                   {"ratio": r, "tensors": "1x1 convs + fc"}, curve(u, ev, TOOL_QPS))
    for tol in (0.05, 0.1, 0.2):
        tols = {n: tol for n in names}
        coded, done = decompose(t, tols)
        info = {"decomposed": len(done),
                "parameters_after": int(sum(a.size for a in coded.values()))}
        log(f"low rank 1x1+fc {tol}: {info}")
        res.series(f"low rank 1x1+fc:{tol}", "low-rank decomposition (DC)",
                   {"tolerance": tol, "tensors": "1x1 convs + fc"},
                   curve(t, ev, TOOL_QPS, low_rank=tols), info)


TOOLS = {"quantization": run_quantization, "bnf": run_bnf, "ls": run_ls,
         "sparsify": run_sparsify, "prune": run_prune, "micro": run_micro, "unify": run_unify,
         "lowrank": run_lowrank, "pointwise": run_pointwise}


def main(argv: list[str]) -> int:
    tensors, evaluate = en.load()
    res = Results(MODEL, "kl")
    res.set("reference", evaluate.reference)
    res.set("float32_bytes", int(sum(a.nbytes for a in tensors.values())))
    for name in argv or list(TOOLS):
        log(f"== {name}")
        TOOLS[name](res, tensors, evaluate)
        plot(MODEL, "kl", log_y=True, higher_is_better=False,
             title="EfficientNet-Lite0: KL divergence from the float model (20 images) vs bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
