"""Encode and decode with NNCodec 2.1.3 for the rate-distortion curves (``rd_curves.py``).

Runs with the python of NNCodec's own environment (numpy<2; built by tests/peer/setup_peer.sh);
imports nothing from nnr. It calls NNCodec's public ``nnc.compress`` / ``nnc.decompress`` with
their defaults except where a job says otherwise, so "NNCodec's defaults" are exactly NNCodec's.

    python nncodec_driver.py JOBS.json RESULTS.jsonl
    python nncodec_driver.py decode STREAM OUT.npz     # NNCodec decodes another codec's stream

JOBS.json: ``{"npz": tensors.npz, "jobs": [{"id": str, "qp": int, "dq": bool,
"codebook_mode": 0|1|2, "opt_qp": bool, "nonweight_qp": int|null, "qp_density": int,
"qp_per_tensor": {name: qp}|null, "stream": out.nnc, "decoded": out.npz}, ...]}``.
Omitted keys take ``nnc.compress``'s defaults (qp -38, qp_density 2, nonweight_qp -75, DQ on,
codebook_mode 0, opt_qp off, param_opt on, scan_order 0). For each job one JSON line is appended
to RESULTS.jsonl: ``{"id", "bytes", "encode_s", "decode_s", "encode_cpu_s", "decode_cpu_s"}`` or ``{"id", "error"}``.
Timings are wall-clock (and process CPU) seconds of ``compress`` and of ``decompress`` alone
(no file I/O).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "peer"))
from nncodec_stubs import stub_frameworks  # noqa: E402  (shared with tests/peer/nncodec_driver.py)


stub_frameworks()
from nncodec.nnc import compress, decompress  # noqa: E402

OPTION_MAP = {"qp": "qp", "dq": "use_dq", "codebook_mode": "codebook_mode", "opt_qp": "opt_qp",
              "nonweight_qp": "nonweight_qp", "qp_density": "qp_density",
              "qp_per_tensor": "qp_per_tensor", "scan_order": "scan_order",
              "lambda_scale": "lambda_scale", "param_opt": "param_opt"}


def run_job(params: dict, job: dict) -> dict:
    kwargs = {OPTION_MAP[k]: v for k, v in job.items() if k in OPTION_MAP and v is not None}
    if "qp_per_tensor" in kwargs:
        kwargs["qp_per_tensor"] = {k: np.int32(v) for k, v in kwargs["qp_per_tensor"].items()}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):          # NNCodec prints INFO lines
        t0, c0 = time.perf_counter(), time.process_time()
        stream = compress(dict(params), bitstream_path=None, return_bitstream=True, **kwargs)
        t1, c1 = time.perf_counter(), time.process_time()
        decoded = decompress(bytearray(stream))
        t2, c2 = time.perf_counter(), time.process_time()
    with open(job["stream"], "wb") as f:
        f.write(bytes(stream))
    np.savez(job["decoded"], **{str(k): np.asarray(v) for k, v in decoded.items()})
    return {"id": job["id"], "bytes": len(stream), "encode_s": t1 - t0, "decode_s": t2 - t1,
            "encode_cpu_s": c1 - c0, "decode_cpu_s": c2 - c1}


def main(argv: list[str]) -> int:
    if argv == ["version"]:
        print(importlib.metadata.version("nncodec"))
        return 0
    if argv and argv[0] == "decode":                # decode <stream> <out.npz>: a check that
        _, stream_path, out_path = argv             # NNCodec reads another codec's stream
        with open(stream_path, "rb") as f:
            data = bytearray(f.read())
        with contextlib.redirect_stdout(io.StringIO()):
            decoded = decompress(data)
        np.savez(out_path, **{str(k): np.asarray(v) for k, v in decoded.items()})
        return 0
    jobs_path, results_path = argv
    spec = json.load(open(jobs_path))
    with np.load(spec["npz"]) as z:
        params = {k: np.ascontiguousarray(z[k], dtype=np.float32) for k in z.files}
    with open(results_path, "a") as out:
        for job in spec["jobs"]:
            try:
                rec = run_job(params, job)
            except BaseException as exc:  # NNCodec raises SystemExit and AssertionError too
                if isinstance(exc, KeyboardInterrupt):
                    raise
                rec = {"id": job["id"], "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(rec) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
