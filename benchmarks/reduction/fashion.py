"""Reduction tools on the Fashion-MNIST CNN (benchmarks/eval/fashion_cnn.py): rate and top-1
on the 10k test images, each tool at several settings combined with quantization, against
quantization alone. Fine-tuning uses the 60k training images (mini-batches of 128, fixed seed).

    nice -n 10 python benchmarks/reduction/fashion.py [tool ...]     # default: all
    tools: quantization finetune bnf ls lsa sparsify sparsify_fc1 closs closs_global prune
           micro unify lowrank lowrank_ft

Writes benchmarks/results/reduction_fashion_cnn.json (series merged in) and the PNG.
"""
from __future__ import annotations

import functools
import sys
import time

import numpy as np

from common import Results, log, plot, point  # noqa: E402 (also sets sys.path)
from benchmarks.eval import fashion_cnn as fc  # noqa: E402
from nnr.reduction import (  # noqa: E402
    BatchNorm, ChannelGroup, FineTune, PrunePlan, Slice, SparsifyPlan, add_local_scaling,
    fine_tune_structured, fisher_diagonal, fold_batch_norm, magnitude_sparsify, micro_prune,
    postprocess, prune, sparsify, sparsity, tune_local_scaling, unify)

MODEL = "fashion_cnn"
QPS = [-14, -18, -22, -26, -30, -34]
TOOL_QPS = [-14, -18, -22, -26, -30]
BNS = {"conv1.weight": BatchNorm("bn1.weight", "bn1.bias", "bn1.running_mean",
                                 "bn1.running_var", fc.BN_EPS),
       "conv2.weight": BatchNorm("bn2.weight", "bn2.bias", "bn2.running_mean",
                                 "bn2.running_var", fc.BN_EPS)}
BN1 = tuple(Slice(f"bn1.{s}") for s in ("weight", "bias", "running_mean", "running_var"))
BN2 = tuple(Slice(f"bn2.{s}") for s in ("weight", "bias", "running_mean", "running_var"))
GROUPS = [ChannelGroup("conv1.weight", BN1 + (Slice("conv2.weight", 1),), bn=BNS["conv1.weight"]),
          ChannelGroup("conv2.weight", BN2 + (Slice("fc1.weight", 1, repeat=49),),
                       bn=BNS["conv2.weight"]),
          ChannelGroup("fc1.weight", (Slice("fc1.bias"), Slice("fc2.weight", 1)))]
RECOVER = FineTune(steps=150, lr=2e-4)


def torch_logits(w, x):
    import torch.nn.functional as F

    def bn(h, p):
        return F.batch_norm(h, w[p + ".running_mean"], w[p + ".running_var"], w[p + ".weight"],
                            w[p + ".bias"], False, 0.0, fc.BN_EPS)
    h = F.max_pool2d(F.relu(bn(F.conv2d(x, w["conv1.weight"], padding=1), "bn1")), 2)
    h = F.max_pool2d(F.relu(bn(F.conv2d(h, w["conv2.weight"], padding=1), "bn2")), 2)
    h = F.relu(F.linear(h.flatten(1), w["fc1.weight"], w["fc1.bias"]))
    return F.linear(h, w["fc2.weight"], w["fc2.bias"])


def make_loss(seed: int = 0, batch: int = 64):
    """Cross-entropy on the next training mini-batch (a fixed-seed permutation, cycled)."""
    import torch
    xtr, ytr = fc.read_split("train")
    x = torch.from_numpy(fc.normalise(xtr))
    y = torch.from_numpy(ytr.astype(np.int64))
    order = np.random.RandomState(seed).permutation(len(x))
    state = {"i": 0}

    def loss_fn(w):
        i = state["i"]
        idx = torch.from_numpy(order[i:i + batch])
        state["i"] = (i + batch) % (len(order) - batch)
        return torch.nn.functional.cross_entropy(torch_logits(w, x[idx]), y[idx])
    return loss_fn


def curve(tensors, evaluate, qps, **kw) -> list[dict]:
    pts = []
    for qp in qps:
        p = point(tensors, evaluate, qp=qp, **kw)
        log(f"  qp {qp}: {p['bytes']} B top1 {p['metrics']['top1']:.4f}")
        pts.append(p)
    return pts


def run_quantization(res, t, ev, loss_fn):
    res.series("quantization", "quantization", {"dq": True},
               curve(t, ev, list(range(-12, -36, -2))))


def run_finetune(res, t, ev, loss_fn):
    """Control: the same fine-tuning as the tools' recovery, without any tool."""
    from nnr.reduction.finetune import fine_tune
    from nnr.reduction.sparsify import default_trainable
    for steps in (150, 300):
        tuned, _ = fine_tune(t, loss_fn, default_trainable(t), FineTune(steps=steps, lr=2e-4))
        res.series(f"fine-tuned only:{steps} steps", "control: fine-tuning without a tool",
                   {"steps": steps, "lr": 2e-4, "batch": 64}, curve(tuned, ev, TOOL_QPS))


def run_bnf(res, t, ev, loss_fn):
    folded, blocks = fold_batch_norm(t, BNS)
    post = lambda d: postprocess(d, batch_norms=BNS)       # noqa: E731
    res.series("bnf", "batch-norm folding", {"eps": fc.BN_EPS},
               curve(folded, ev, QPS, blocks=blocks, post=post),
               {"tensors_before": len(t), "tensors_after": len(folded)})


def run_ls(res, t, ev, loss_fn):
    folded, blocks = fold_batch_norm(t, BNS)
    post = lambda d: postprocess(d, batch_norms=BNS)       # noqa: E731
    pts = []
    for qp in QPS:
        ls, b2 = add_local_scaling(folded, qp=qp, blocks=blocks)
        pts += curve(ls, ev, [qp], blocks=b2, post=post, qp_per_tensor=_ls_qps(b2, qp))
    res.series("bnf:+ls (data-free)", "local scaling", {"fit": "least squares",
                                                        "ls_qp": "qp - 8"}, pts)


def _ls_qps(blocks, qp) -> dict[str, int]:
    """LS tensors at qp - 8 (NNCodec's qp_lsa: a quarter of the weights' step)."""
    return {m["weight.ls"]: qp - 8 for m in blocks.values() if "weight.ls" in m}


def run_lsa(res, t, ev, loss_fn):
    folded, blocks = fold_batch_norm(t, BNS)
    post = lambda d: postprocess(d, batch_norms=BNS)       # noqa: E731
    for bias in (False, True):
        pts = []
        for qp in QPS:
            tuned, b2, hist = tune_local_scaling(folded, loss_fn, qp=qp, blocks=blocks,
                                                 batch_norms=BNS, train_biases=bias,
                                                 finetune=FineTune(steps=150, lr=2e-3))
            pts += curve(tuned, ev, [qp], blocks=b2, post=post, qp_per_tensor=_ls_qps(b2, qp))
        key = "bnf:+lsa trained" + (" +biases" if bias else "")
        res.series(key, "local scaling", {"steps": 150, "lr": 2e-3, "batch": 64,
                                          "train_biases": bias, "ls_qp": "qp - 8"}, pts)


def run_sparsify(res, t, ev, loss_fn):
    for r in (0.5, 0.7, 0.85, 0.95):
        s = magnitude_sparsify(t, r)
        log(f"magnitude {r}")
        res.series(f"magnitude:{r}", "sparsification (magnitude, no data)", {"ratio": r},
                   curve(s, ev, TOOL_QPS), {"sparsity": sparsity(s)})


def run_sparsify_fc1(res, t, ev, loss_fn):
    for r in (0.5, 0.7, 0.9):
        s = magnitude_sparsify(t, r, names=["fc1.weight"])
        log(f"magnitude fc1 {r}")
        res.series(f"magnitude fc1 only:{r}", "sparsification (magnitude, no data)",
                   {"ratio": r, "tensors": ["fc1.weight"]}, curve(s, ev, TOOL_QPS),
                   {"sparsity": sparsity(s)})


def run_closs(res, t, ev, loss_fn):
    for r in (0.7, 0.85, 0.95):
        t0 = time.perf_counter()
        s, rep = sparsify(t, loss_fn, SparsifyPlan(r, multiple=0.2,
                                                   finetune=FineTune(steps=300, lr=5e-4),
                                                   recover=RECOVER))
        log(f"closs {r}: sparsity after training {rep.sparsity_after_training:.3f} "
            f"({time.perf_counter() - t0:.0f} s)")
        res.series(f"compressibility loss:{r}", "sparsification (compressibility loss + FT)",
                   {"ratio": r, "multiple": 0.2, "steps": 300, "recover_steps": RECOVER.steps,
                    "batch": 64},
                   curve(s, ev, TOOL_QPS),
                   {"sparsity": rep.sparsity, "loss_first": rep.loss[:5],
                    "loss_last": rep.loss[-5:]})


def run_closs_global(res, t, ev, loss_fn):
    for r in (0.7, 0.85, 0.9):
        s, rep = sparsify(t, loss_fn, SparsifyPlan(r, multiple=0.2, scope="global",
                                                   finetune=FineTune(steps=300, lr=5e-4),
                                                   recover=RECOVER))
        log(f"closs global {r}: per-tensor sparsity "
            f"{ {n: round(float(np.mean(s[n] == 0)), 3) for n in s if s[n].ndim > 1} }")
        res.series(f"compressibility loss, global:{r}",
                   "sparsification (compressibility loss + FT)",
                   {"ratio": r, "multiple": 0.2, "scope": "global", "steps": 300,
                    "recover_steps": RECOVER.steps, "batch": 64}, curve(s, ev, TOOL_QPS),
                   {"sparsity": rep.sparsity})


def run_prune(res, t, ev, loss_fn):
    for crit in ("diffusion", "l1"):
        for r in (0.25, 0.5, 0.75):
            p, rep = prune(t, GROUPS, PrunePlan(r, criterion=crit))
            m = ev(p)
            log(f"prune {crit} {r}: no FT top1 {m['top1']:.4f}")
            p, rep = prune(t, GROUPS, PrunePlan(r, criterion=crit, recover=RECOVER, sparsity=0.5,
                                                sparsify_finetune=FineTune(steps=100, lr=5e-4)),
                           loss_fn)
            kept = {k: len(v) for k, v in rep.kept.items()}
            res.series(f"{crit}:{r}", f"pruning ({crit} importance) + FT + sparsity 0.5",
                       {"ratio": r, "criterion": crit, "recover_steps": RECOVER.steps},
                       curve(p, ev, TOOL_QPS),
                       {"top1_pruned_no_finetune": m["top1"], "kept": kept,
                        "parameters_after": rep.parameters_after,
                        "parameters_before": rep.parameters_before})


def run_blocks(res, t, ev, loss_fn, tool):
    """Micro-structured pruning or unification of 2x2xk blocks (Fisher ranking), fine-tuned."""
    reduce, ratios, key, label, plan_arg = {
        "micro": (micro_prune, (0.5, 0.75, 0.9), "micro-pruning", "micro-structured pruning", "masks"),
        "unify": (unify, (0.5, 0.9), "unification", "unification", "plan")}[tool]
    fisher = fisher_diagonal(t, loss_fn, batches=16)
    for r in ratios:
        p, plan = reduce(t, r, fisher=fisher)
        m = ev(p)
        p, _ = fine_tune_structured(p, loss_fn, RECOVER, **{plan_arg: plan})
        log(f"{tool} {r}: before FT {m['top1']:.4f}")
        res.series(f"{key}:{r}", f"{label} (2x2xk blocks) + FT",
                   {"ratio": r, "block": "2,2,all", "ranking": "Fisher"},
                   curve(p, ev, TOOL_QPS), {"top1_no_finetune": m["top1"]})


def run_lowrank(res, t, ev, loss_fn):
    from nnr.reduction import decompose
    for tol in (0.2, 0.35, 0.5, 0.65):
        _, done = decompose(t, tol)
        ranks = {k: v.rank for k, v in done.items()}
        log(f"low rank {tol}: {ranks}")
        res.series(f"low rank:{tol}", "low-rank decomposition (DC: G, H coded)",
                   {"tolerance": tol}, curve(t, ev, TOOL_QPS, low_rank=tol), {"ranks": ranks})


LOWRANK_FT = FineTune(steps=300, lr=3e-4)


def run_lowrank_ft(res, t, ev, loss_fn):
    """Low rank, then G and H fine-tuned on the task loss (fine_tune_low_rank), coded as
    they are (low_rank={w: LowRank}); the plain series is run_lowrank's."""
    from nnr.reduction import apply_low_rank, decompose, fine_tune_low_rank
    for tol in (0.35, 0.5, 0.65):
        _, factors = decompose(t, tol)
        t0 = time.perf_counter()
        tuned, hist = fine_tune_low_rank(t, factors, make_loss(), LOWRANK_FT)
        seconds = time.perf_counter() - t0
        before = ev(apply_low_rank(t, factors))["top1"]
        after = ev(apply_low_rank(t, tuned))["top1"]
        log(f"low rank {tol} + FT: float top1 {before:.4f} -> {after:.4f} ({seconds:.0f} s)")
        res.series(f"low rank + FT:{tol}", "low-rank decomposition + FT of G, H",
                   {"tolerance": tol, "steps": LOWRANK_FT.steps, "lr": LOWRANK_FT.lr,
                    "batch": 64}, curve(t, ev, TOOL_QPS, low_rank=tuned),
                   {"ranks": {k: v.rank for k, v in tuned.items()},
                    "parameters": int(sum(np.size(a) for k, a in t.items() if k not in tuned)
                                      + sum(v.g.size + v.h.size for v in tuned.values())),
                    "top1_float_svd": before, "top1_float_finetuned": after,
                    "error_after": {k: v.error for k, v in tuned.items()},
                    "loss_first": float(np.mean(hist[:20])),
                    "loss_last": float(np.mean(hist[-20:])), "seconds": round(seconds, 1)})


TOOLS = {"quantization": run_quantization, "finetune": run_finetune, "bnf": run_bnf,
         "ls": run_ls, "lsa": run_lsa, "sparsify": run_sparsify,
         "sparsify_fc1": run_sparsify_fc1, "closs": run_closs, "closs_global": run_closs_global,
         "prune": run_prune, "micro": functools.partial(run_blocks, tool="micro"),
         "unify": functools.partial(run_blocks, tool="unify"), "lowrank": run_lowrank,
         "lowrank_ft": run_lowrank_ft}


def main(argv: list[str]) -> int:
    import torch
    torch.manual_seed(0)
    tensors, evaluate = fc.load()
    res = Results(MODEL, "top1")
    res.set("reference", evaluate.reference)
    res.set("float32_bytes", int(sum(a.nbytes for a in tensors.values())))
    loss_fn = make_loss()
    for name in argv or list(TOOLS):
        log(f"== {name}")
        TOOLS[name](res, tensors, evaluate, loss_fn)
        plot(MODEL, "top1", title="Fashion-MNIST CNN: top-1 (10k test images) vs bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
