"""Rate-distortion curves of nnr and NNCodec 2.1.3 on real models with their real metrics.

    nice -n 10 python benchmarks/eval/rd_curves.py                 # full run, all models
    python benchmarks/eval/rd_curves.py --quick --out /tmp/rd      # smoke test (< 2 min)
    python benchmarks/eval/rd_curves.py --models fashion_cnn --qps -26,-30 --no-dq-off

For every model of ``benchmarks.eval`` the float32 weights are coded at a sweep of working points
(a global qp from coarse to fine, DQ on and off, qp_density 2, 1-D tensors at nonweight_qp -75)
by both codecs:

* nnr (``nnr.encode``) with ``codebook="auto"``;
* NNCodec 2.1.3 through ``nnc.compress`` / ``nnc.decompress`` in its own environment
  (``nncodec_driver.py``, subprocess, tensors passed as .npz) with its defaults except qp and
  DQ (so codebook_mode 0, opt_qp off); its defaults proper are the qp -38 DQ point.

Each stream is decoded by the codec that wrote it, the decoded tensors are evaluated, and the
results go to ``OUT/rd_<model>.json`` (bytes, size relative to float32, metrics, whether the
model's tolerance is met, encode/decode wall and CPU seconds, settings, versions),
``OUT/rd_<model>.png`` (bytes against metrics, both codecs) and ``OUT/rd_summary.md`` (per model
the smallest stream within tolerance for each codec and the ratio nnr/NNCodec, plus bytes at
equal settings), rebuilt from every ``rd_*.json`` in OUT.

NNCodec's environment: ``--peer-python``, else ``$NNR_PEER_VENV/bin/python``, else
``<repo>/.peer-venv/bin/python`` (``tests/peer/setup_peer.sh`` builds it). Codecs run one
after the other, never concurrently, so that their timings are comparable; run the whole
script under ``nice`` on a shared machine. Timings on a loaded machine are noisy: the CPU
seconds (``*_cpu_s``) are the steadier figure.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import eval as models  # noqa: E402

DRIVER = Path(__file__).with_name("nncodec_driver.py")
DEFAULT_OUT = REPO / "benchmarks" / "results"

#: Per model: qps with DQ on, qps with DQ off (full run), qps of --quick. Chosen around where
#: each model's tolerance is crossed (fine steps there), with -38 (NNCodec's default) included.
SWEEPS: dict[str, dict[str, list[int]]] = {
    "fashion_cnn": {"dq": [-18, -22, -26, -28, -30, -32, -34, -38],
                    "nodq": [-22, -26, -30, -34], "quick": [-22, -34]},
    "efficientnet_lite0": {"dq": [-22, -26, -30, -34, -36, -38, -42],
                           "nodq": [-30, -38], "quick": [-26, -38]},
    "minilm_l6": {"dq": [-26, -30, -32, -34, -38],
                  "nodq": [-30, -34], "quick": [-26, -34]},
}
QUICK_MODELS = ["fashion_cnn"]


# ----------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def peer_python(arg: str | None) -> Path | None:
    cands = [arg] if arg else []
    if os.environ.get("NNR_PEER_VENV"):
        cands.append(os.path.join(os.environ["NNR_PEER_VENV"], "bin", "python"))
    cands.append(str(REPO / ".peer-venv" / "bin" / "python"))
    for c in cands:
        if c and Path(c).exists():
            return Path(c)
    return None


def versions(peer: Path | None) -> dict:
    import nnr
    out = {"nnr": getattr(nnr, "__version__", "?"), "numpy": np.__version__,
           "python": platform.python_version()}
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        out["nnr_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src", "cpp"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        if dirty:
            out["nnr_commit"] += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    if peer is not None:
        proc = subprocess.run([str(peer), str(DRIVER), "version"], capture_output=True,
                              text=True, timeout=120)
        out["nncodec"] = proc.stdout.strip() or f"? ({proc.stderr.strip()[-200:]})"
    return out


def float32_bytes(tensors) -> int:
    return int(sum(np.asarray(v).size * 4 for v in tensors.values()))


def point_record(codec, series, settings, nbytes, f32, enc, dec, metrics, accepted, **extra):
    rec = {"codec": codec, "series": series, "settings": settings, "bytes": int(nbytes),
           "size_ratio": nbytes / f32, "compression_factor": f32 / nbytes,
           "bits_per_value": 8.0 * nbytes / (f32 / 4)}
    rec.update(enc)
    rec.update(dec)
    rec["metrics"] = metrics
    rec["accepted"] = bool(accepted)
    rec.update(extra)
    return rec


def check_names(tensors, decoded, who):
    missing = sorted(set(tensors) - set(decoded))
    if missing:
        raise RuntimeError(f"{who}: decoded stream lacks {len(missing)} tensor(s), e.g. {missing[:3]}")


# ----------------------------------------------------------------------------- codecs


def run_nnr(tensors, evaluate, points, f32, threads):
    import nnr
    out = []
    for qp, dq in points:
        settings = {"qp": qp, "dq": dq, "codebook": "auto", "qp_density": 2,
                    "nonweight_qp": None, "scan_order": 0}
        if threads:
            settings["threads"] = threads
        t0, c0 = time.perf_counter(), time.process_time()
        stream = nnr.encode(tensors, **settings)
        t1, c1 = time.perf_counter(), time.process_time()
        decoded = nnr.decode(stream)
        t2, c2 = time.perf_counter(), time.process_time()
        check_names(tensors, decoded, "nnr")
        m = evaluate(decoded)
        t3, c3 = time.perf_counter(), time.process_time()
        series = f"nnr dq={'on' if dq else 'off'} codebook=auto"
        out.append(point_record("nnr", series, settings, len(stream), f32,
                                {"encode_s": t1 - t0, "encode_cpu_s": c1 - c0},
                                {"decode_s": t2 - t1, "decode_cpu_s": c2 - c1},
                                m, evaluate.accept(m), evaluate_s=t3 - t2,
                                evaluate_cpu_s=c3 - c2))
        log(f"  nnr     qp {qp:4d} dq {int(dq)}: {len(stream):>10,d} B  enc {t1 - t0:5.1f}s "
            f"dec {t2 - t1:5.1f}s eval {t3 - t2:5.1f}s  {fmt_metrics(m)}"
            f"{'  ok' if out[-1]['accepted'] else ''}")
    return out


def run_nncodec(peer, tensors, evaluate, points, f32, workdir: Path, extra_jobs=()):
    """``points``: (qp, dq) pairs, run with NNCodec's defaults otherwise; ``extra_jobs``:
    (series label, job dict) pairs with other options."""
    npz = workdir / "tensors.npz"
    np.savez(npz, **{k: np.asarray(v, np.float32) for k, v in tensors.items()})
    jobs, labels = [], {}
    for i, (qp, dq) in enumerate(points):
        jid = f"p{i}"
        jobs.append({"id": jid, "qp": qp, "dq": dq})
        labels[jid] = (f"NNCodec dq={'on' if dq else 'off'}", {"qp": qp, "dq": dq})
    for i, (label, job) in enumerate(extra_jobs):
        jid = f"x{i}"
        jobs.append({"id": jid, **job})
        labels[jid] = (label, dict(job))
    for job in jobs:
        job["stream"] = str(workdir / f"{job['id']}.nnc")
        job["decoded"] = str(workdir / f"{job['id']}.npz")
    spec = workdir / "jobs.json"
    spec.write_text(json.dumps({"npz": str(npz), "jobs": jobs}))
    results_path = workdir / "results.jsonl"
    if results_path.exists():
        results_path.unlink()
    # One process for all points; it appends one line per job, read as they come.
    proc = subprocess.Popen([str(peer), str(DRIVER), str(spec), str(results_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, done = [], 0

    def drain():
        nonlocal done
        if not results_path.exists():
            return
        lines = results_path.read_text().splitlines()
        for line in lines[done:]:
            if not line.endswith("}"):
                break
            done += 1
            r = json.loads(line)
            label, settings = labels[r["id"]]
            settings = {"qp_density": 2, "nonweight_qp": -75, "codebook_mode": 0,
                        "opt_qp": False, "scan_order": 0, **settings}
            if "error" in r:
                log(f"  NNCodec {settings}: error {r['error']}")
                out.append({"codec": "nncodec", "series": label, "settings": settings,
                            "error": r["error"]})
                continue
            decoded_path = workdir / f"{r['id']}.npz"
            with np.load(decoded_path) as z:
                decoded = {k: z[k] for k in z.files}
            decoded_path.unlink()
            check_names(tensors, decoded, "NNCodec")
            t0, c0 = time.perf_counter(), time.process_time()
            m = evaluate(decoded)
            t1, c1 = time.perf_counter(), time.process_time()
            out.append(point_record("nncodec", label, settings, r["bytes"], f32,
                                    {"encode_s": r["encode_s"], "encode_cpu_s": r.get("encode_cpu_s")},
                                    {"decode_s": r["decode_s"], "decode_cpu_s": r.get("decode_cpu_s")},
                                    m, evaluate.accept(m), evaluate_s=t1 - t0,
                                    evaluate_cpu_s=c1 - c0))
            log(f"  NNCodec qp {settings.get('qp', -38):4d} dq {int(settings.get('dq', True))}"
                f"{' ' + label if label.startswith('NNCodec opt') else ''}: {r['bytes']:>10,d} B  "
                f"enc {r['encode_s']:5.1f}s dec {r['decode_s']:5.1f}s eval {t1 - t0:5.1f}s  "
                f"{fmt_metrics(m)}{'  ok' if out[-1]['accepted'] else ''}")

    # Evaluate each point only after the driver finished (codecs and evaluation never share
    # the CPU, so NNCodec's timings are not disturbed).
    _, stderr = proc.communicate()
    drain()
    if proc.returncode != 0:
        raise RuntimeError(f"NNCodec driver exited {proc.returncode}: {stderr.strip()[-800:]}")
    if done < len(jobs):
        raise RuntimeError(f"NNCodec driver answered {done} of {len(jobs)} jobs: {stderr[-800:]}")
    return out


# ----------------------------------------------------------------------------- reporting


def fmt_metrics(m: dict) -> str:
    keys = [k for k in ("top1", "agreement", "kl", "mrr", "cos") if k in m]
    return " ".join(f"{k}={m[k]:.4g}" for k in keys)


def smallest_accepted(points, codec):
    ok = [p for p in points if p.get("codec") == codec and p.get("accepted")]
    return min(ok, key=lambda p: p["bytes"]) if ok else None


#: model -> (distortion metric, transform to "lower is better") for equal-distortion ratios
DISTORTION = {"fashion_cnn": ("kl", "kl", lambda v: v),
              "efficientnet_lite0": ("kl", "kl", lambda v: v),
              "minilm_l6": ("cos", "1-cos", lambda v: 1.0 - v)}


def equal_distortion_ratio(result: dict, dq: bool = True, samples: int = 25):
    """nnr / NNCodec bytes at equal distortion: both codecs' curves (log bytes against log
    distortion, one series each: the given DQ setting, default options) are interpolated at
    ``samples`` distortion levels spread log-uniformly over the range both cover; returns the
    geometric mean of the byte ratios and that range, or None. A grid-independent companion to
    the smallest-within-tolerance ratio (like a BD-rate)."""
    metric, label, f = DISTORTION.get(result["model"], (None, None, None))
    if metric is None:
        return None
    curves = {}
    for codec in ("nnr", "nncodec"):
        pts = [p for p in result["points"] if p.get("codec") == codec and "metrics" in p
               and bool(p["settings"].get("dq", True)) == dq
               and not p["settings"].get("opt_qp") and not p["settings"].get("codebook_mode")]
        pts = [(np.log(max(f(p["metrics"][metric]), 1e-12)), np.log(p["bytes"])) for p in pts]
        if len(pts) < 2:
            return None
        curves[codec] = np.array(sorted(pts))
    lo = max(c[0, 0] for c in curves.values())
    hi = min(c[-1, 0] for c in curves.values())
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, samples)
    logs = {k: np.interp(grid, c[:, 0], c[:, 1]) for k, c in curves.items()}
    return {"ratio": float(np.exp(np.mean(logs["nnr"] - logs["nncodec"]))),
            "distortion": label, "dq": dq, "range": [float(np.exp(lo)), float(np.exp(hi))]}


def settings_text(p) -> str:
    s = p["settings"]
    parts = [f"qp {s.get('qp', -38)}", f"dq {'on' if s.get('dq', True) else 'off'}"]
    if p["codec"] == "nnr":
        parts.append(f"codebook {s.get('codebook', 'off')}")
    else:
        if s.get("codebook_mode"):
            parts.append(f"codebook_mode {s['codebook_mode']}")
        if s.get("opt_qp"):
            parts.append("opt_qp")
    return ", ".join(parts)


#: model -> panels: (metric, axis label, plotted as 1 - value on a log axis / log axis / linear)
PLOT_PANELS = {
    "fashion_cnn": [("top1", "top-1 accuracy (10k test images)", "lin"),
                    ("agreement", "top-1 agreement with uncompressed", "lin"),
                    ("kl", "mean KL(uncompressed || decoded)", "log")],
    "efficientnet_lite0": [("top1", "top-1 accuracy (20 images)", "lin"),
                           ("agreement", "top-1 agreement with uncompressed", "lin"),
                           ("kl", "mean KL(uncompressed || decoded)", "log")],
    "minilm_l6": [("mrr", "retrieval MRR (1000-way)", "lin"),
                  ("top1", "retrieval top-1", "lin"),
                  ("cos", "1 - mean cosine to uncompressed embeddings", "1-log")],
}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = PLOT_PANELS.get(result["model"], [(result["primary"], result["primary"], "lin")])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    axes = axes[0]
    # NNCodec drawn first, wide and hollow, so that nnr (narrow, filled) stays visible on top
    # where the curves coincide.
    styles = {"nncodec": dict(color="tab:red", ls="--", lw=3.0, mfc="none", ms=9, mew=1.5),
              "nnr": dict(color="tab:blue", ls="-", lw=1.2, ms=4)}
    series = {}
    for p in result["points"]:
        if "metrics" in p:
            series.setdefault((p["codec"], p["series"]), []).append(p)
    order = sorted(series, key=lambda k: (k[0] != "nncodec", k[1]))
    for codec, label in order:
        pts = sorted(series[(codec, label)], key=lambda p: p["bytes"])
        x = [p["bytes"] / 1e6 for p in pts]
        dq = pts[0]["settings"].get("dq", True)
        kw = dict(styles[codec], marker="o" if dq else "s", alpha=1.0 if dq else 0.55,
                  label=label)
        for ax, (metric, _, scale) in zip(axes, panels):
            y = [p["metrics"][metric] for p in pts]
            if scale == "1-log":
                y = [max(1.0 - v, 1e-9) for v in y]
            elif scale == "log":
                y = [max(v, 1e-9) for v in y]
            ax.plot(x, y, **kw)
            acc = [(xv, yv) for p, xv, yv in zip(pts, x, y) if p["accepted"]]
            if acc:
                ax.plot(*zip(*acc), ls="none", marker="*", color=styles[codec]["color"],
                        ms=13 if codec == "nncodec" else 8, mfc="none" if codec == "nncodec"
                        else styles[codec]["color"])
    for ax, (metric, ylabel, scale) in zip(axes, panels):
        ref = result["reference"][metric]
        if scale == "lin":
            ax.axhline(ref, color="gray", lw=0.8, ls=":", label=f"uncompressed ({ref:.4g})")
        else:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("stream size (MB)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['title']} (float32 {result['float32_bytes'] / 1e6:.2f} MB); "
                 f"★ = within tolerance", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_markdown(results: list[dict]) -> str:
    lines = ["# Rate-distortion: nnr vs NNCodec 2.1.3 at equal accuracy", "",
             "Made by `benchmarks/eval/rd_curves.py` (see its docstring). Each codec codes the "
             "float32 weights at a sweep of global qps (qp_density 2, DQ on and off, 1-D tensors "
             "at qp -75); nnr uses `codebook=\"auto\"`, NNCodec its defaults (codebook_mode 0, "
             "opt_qp off). \"Smallest within tolerance\" is the smallest stream of the sweep "
             "whose decoded model meets the model's tolerance, so its resolution is the sweep's "
             "qp step. A ratio below 1 means nnr's stream is smaller. \"At equal distortion\" "
             "compares the two DQ-on curves at equal KL divergence (classifiers) or equal "
             "1 - cosine (MiniLM), interpolated in log-log and averaged (geometric mean) over "
             "the range both cover, like a BD-rate: a finer signal than the thresholded "
             "ratio.", ""]
    lines += ["| model | float32 | uncompressed metrics | nnr: smallest within tolerance | "
              "NNCodec: smallest within tolerance | nnr / NNCodec | nnr / NNCodec at equal "
              "distortion (DQ on) |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        ref = ", ".join(f"{k} {v:.4g}" for k, v in r["reference"].items()
                        if k not in ("agreement", "kl", "logit_mse", "cos", "cos_min", "correct"))
        cells = []
        best = {}
        for codec in ("nnr", "nncodec"):
            p = smallest_accepted(r["points"], codec)
            best[codec] = p
            ran = any(q.get("codec") == codec for q in r["points"])
            cells.append(("none in sweep" if ran else "not run") if p is None else
                         f"{p['bytes']:,} B ({100 * p['size_ratio']:.2f} %; {settings_text(p)})")
        ratio = (f"{best['nnr']['bytes'] / best['nncodec']['bytes']:.4f}"
                 if best["nnr"] and best["nncodec"] else "n/a")
        ed = equal_distortion_ratio(r)
        ed_text = (f"{ed['ratio']:.4f} ({ed['distortion']} {ed['range'][0]:.2g}..{ed['range'][1]:.2g})"
                   if ed else "n/a")
        lines.append(f"| {r['model']} | {r['float32_bytes'] / 1e6:.2f} MB | {ref} | "
                     f"{cells[0]} | {cells[1]} | {ratio} | {ed_text} |")
    lines.append("")
    for r in results:
        lines += [f"## {r['title']}", "",
                  f"- tensors: {r['tensors']}, values: {r['values']:,}, float32: "
                  f"{r['float32_bytes']:,} B",
                  "- uncompressed: " + ", ".join(f"{k} {v:.4g}" for k, v in r["reference"].items()),
                  f"- tolerance: {r['tolerance']}",
                  f"- run: {r['date']}, {r['seconds']:.0f} s, versions: "
                  + ", ".join(f"{k} {v}" for k, v in r["versions"].items()), ""]
        for codec in ("nnr", "nncodec"):
            p = smallest_accepted(r["points"], codec)
            if p:
                finer_fail = [q for q in r["points"] if q.get("codec") == codec
                              and "metrics" in q and q["bytes"] > p["bytes"]
                              and not q["accepted"]]
                note = (f" (not monotone: {len(finer_fail)} larger stream(s) of the sweep miss "
                        "the tolerance)" if finer_fail else "")
                lines.append(f"- smallest within tolerance, {codec}: {p['bytes']:,} B "
                             f"({settings_text(p)}): {fmt_metrics(p['metrics'])}{note}")
        lines += ["", "Bytes at equal settings (both decoded and evaluated; ✓ = within tolerance):",
                  "", "| qp | DQ | nnr bytes | nnr metrics | NNCodec bytes | NNCodec metrics | "
                  "nnr / NNCodec |", "|---|---|---|---|---|---|---|"]
        by_key = {}
        for p in r["points"]:
            if "metrics" not in p or p["settings"].get("opt_qp") or p["settings"].get("codebook_mode"):
                continue
            key = (p["settings"].get("qp", -38), bool(p["settings"].get("dq", True)))
            by_key.setdefault(key, {})[p["codec"]] = p
        for (qp, dq) in sorted(by_key, key=lambda k: (not k[1], -k[0])):
            d = by_key[(qp, dq)]
            a, b = d.get("nnr"), d.get("nncodec")

            def cell(p):
                if p is None:
                    return "", ""
                return f"{p['bytes']:,}", fmt_metrics(p["metrics"]) + (" ✓" if p["accepted"] else "")
            ab, am = cell(a)
            bb, bm = cell(b)
            ratio = f"{a['bytes'] / b['bytes']:.4f}" if a and b else ""
            lines.append(f"| {qp} | {'on' if dq else 'off'} | {ab} | {am} | {bb} | {bm} | {ratio} |")
        extra = [p for p in r["points"] if "metrics" in p and p["codec"] == "nncodec"
                 and (p["settings"].get("opt_qp") or p["settings"].get("codebook_mode"))]
        if extra:
            lines += ["", "NNCodec with other options:", ""]
            for p in sorted(extra, key=lambda p: p["bytes"]):
                lines.append(f"- {p['series']} ({settings_text(p)}): {p['bytes']:,} B, "
                             f"{fmt_metrics(p['metrics'])}{' ✓' if p['accepted'] else ''}")
        lines += ["", f"![{r['model']}](rd_{r['model']}.png)", ""]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def run_model(name, args, peer, vers) -> dict:
    t_start = time.perf_counter()
    log(f"{name}: loading model and data, evaluating the uncompressed weights")
    mod = models.module(name)
    tensors, evaluate = models.load(name)
    f32 = float32_bytes(tensors)
    log(f"{name}: {len(tensors)} tensors, {f32 / 4:,.0f} values, reference {evaluate.reference} "
        f"({evaluate.seconds_reference:.1f} s)")
    sweep = SWEEPS[name]
    if args.qps:
        dq_qps = nodq_qps = args.qps
    elif args.quick:
        dq_qps, nodq_qps = sweep["quick"], []
    else:
        dq_qps, nodq_qps = sweep["dq"], sweep["nodq"]
    if args.no_dq_off:
        nodq_qps = []
    points = [(q, True) for q in dq_qps] + [(q, False) for q in nodq_qps]

    results = []
    if peer is not None:
        extra = []
        if args.nncodec_opt_qp:
            extra += [("NNCodec opt_qp dq=on", {"qp": q, "dq": True, "opt_qp": True})
                      for q in dq_qps]
        if args.nncodec_codebook:
            extra += [("NNCodec codebook_mode=2 dq=on", {"qp": q, "dq": True, "codebook_mode": 2})
                      for q in dq_qps]
        log(f"{name}: NNCodec, {len(points) + len(extra)} points")
        with tempfile.TemporaryDirectory(prefix=f"rd_{name}_", dir=args.workdir) as wd:
            results += run_nncodec(peer, tensors, evaluate, points, f32, Path(wd), extra)
    log(f"{name}: nnr, {len(points)} points")
    results += run_nnr(tensors, evaluate, points, f32, args.threads)

    result = {
        "model": name, "title": mod.TITLE, "tensors": len(tensors),
        "values": int(f32 // 4), "float32_bytes": f32, "reference": evaluate.reference,
        "reference_evaluate_s": evaluate.seconds_reference,
        "tolerance": evaluate.tolerance, "primary": evaluate.primary,
        "sweep": {"dq": dq_qps, "nodq": nodq_qps, "quick": bool(args.quick)},
        "versions": vers, "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": list(os.getloadavg()),
                    "platform": platform.platform()},
        "seconds": time.perf_counter() - t_start, "points": results,
    }
    for codec in ("nnr", "nncodec"):
        p = smallest_accepted(results, codec)
        result.setdefault("smallest_within_tolerance", {})[codec] = (
            None if p is None else {"bytes": p["bytes"], "settings": p["settings"]})
    a, b = (result["smallest_within_tolerance"][c] for c in ("nnr", "nncodec"))
    result["ratio_within_tolerance"] = a["bytes"] / b["bytes"] if a and b else None
    result["ratio_equal_distortion"] = equal_distortion_ratio(result)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None,
                    help=f"comma-separated subset of {', '.join(models.names())}")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: {', '.join(QUICK_MODELS)} at two qps, DQ on only")
    ap.add_argument("--qps", default=None, help="comma-separated qps (overrides the sweep)")
    ap.add_argument("--no-dq-off", action="store_true", help="skip the DQ-off points")
    ap.add_argument("--no-nncodec", action="store_true", help="nnr only")
    ap.add_argument("--nncodec-opt-qp", action="store_true",
                    help="also NNCodec with opt_qp (its per-tensor qp heuristic), DQ on")
    ap.add_argument("--nncodec-codebook", action="store_true",
                    help="also NNCodec with codebook_mode 2 (auto), DQ on")
    ap.add_argument("--peer-python", default=None, help="python of NNCodec's environment")
    ap.add_argument("--threads", type=int, default=None, help="nnr encoder threads")
    ap.add_argument("--out", type=Path, default=None,
                    help="output directory (default benchmarks/results; with --quick a "
                         "temporary directory)")
    ap.add_argument("--workdir", default=None, help="where NNCodec's .npz/.nnc files go")
    ap.add_argument("--summary-only", action="store_true",
                    help="run nothing: redraw the PNGs and rewrite rd_summary.md from OUT/rd_*.json")
    ap.add_argument("--skip-unavailable", action="store_true",
                    help="skip models whose packages or data are missing instead of failing")
    args = ap.parse_args(argv)
    if args.qps:
        args.qps = [int(q) for q in args.qps.split(",")]

    names = (args.models.split(",") if args.models else
             (QUICK_MODELS if args.quick else models.names()))
    out = args.out or (Path(tempfile.mkdtemp(prefix="rd_quick_")) if args.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        write_summary(out, replot=True)
        return 0

    peer = None
    if not args.no_nncodec:
        peer = peer_python(args.peer_python)
        if peer is None:
            print("rd_curves: NNCodec's environment not found (--peer-python, $NNR_PEER_VENV or "
                  "<repo>/.peer-venv; build it with tests/peer/setup_peer.sh), or pass "
                  "--no-nncodec", file=sys.stderr)
            return 2
    vers = versions(peer)
    log(f"versions: {vers}; output to {out}")

    t0 = time.perf_counter()
    for name in names:
        reason = models.unavailable(name)
        if reason:
            if args.skip_unavailable:
                log(f"{name}: skipped: {reason}")
                continue
            print(f"rd_curves: {name}: {reason}", file=sys.stderr)
            return 2
        result = run_model(name, args, peer, vers)
        (out / f"rd_{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, out / f"rd_{name}.png")
        log(f"{name}: done in {result['seconds']:.0f} s -> {out / f'rd_{name}.json'}")

    write_summary(out)
    log(f"all done in {time.perf_counter() - t0:.0f} s; summary {out / 'rd_summary.md'}")
    return 0


def write_summary(out: Path, replot: bool = False) -> None:
    """rd_summary.md from every rd_<model>.json in ``out`` (so a run of one model keeps the
    others' results); with ``replot`` also redraw each PNG."""
    all_results = []
    for name in models.names():
        p = out / f"rd_{name}.json"
        if p.exists():
            r = json.loads(p.read_text())
            r["ratio_equal_distortion"] = equal_distortion_ratio(r)
            all_results.append(r)
            if replot:
                plot(r, out / f"rd_{name}.png")
    (out / "rd_summary.md").write_text(summary_markdown(all_results))


if __name__ == "__main__":
    sys.exit(main())
