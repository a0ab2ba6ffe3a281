"""Decode NNR streams with NNCodec 2.1.3, the reference software, for interoperability tests.

Run by the python of the peer environment that ``tests/peer/setup_peer.sh`` builds (NNCodec needs
numpy<2 and must never be imported next to nnr). This file imports nothing from nnr.

    nncodec_driver.py decode IN.nnc OUT.npz [IN.nnc OUT.npz ...]
    nncodec_driver.py sequence [--hdsp] OUT.npz STEP0.nnc STEP1.nnc ...
    nncodec_driver.py batch JOBS.json RESULTS.jsonl

``decode`` calls ``nnc.decompress(stream)`` with its defaults (``reconstruct_bnf=False``,
``reconstruct_lsa=False``) and saves the returned dict, keyed by tensor name.

``sequence`` decodes an incremental sequence the way the conformance vectors were made: one
``approx_param_base`` dict (initially empty) is passed with ``update_base_param=True`` to every
``decompress`` call, and with ``--hdsp`` one ``HdspTool(True)`` is passed as ``hdsp_tool`` to the
update steps (1, 2, ...) but not to step 0. Keys in OUT.npz are ``<step>/<name>``; a tensor
without an NDU in a step is absent from that step.

``batch`` runs many jobs in one process. JOBS.json is a list of
``{"streams": [paths], "out": path, "sequence": bool, "hdsp": bool}``. For every job, one JSON
line is appended to RESULTS.jsonl when it starts (``{"job": i, "status": "start"}``) and one when
it ends (``{"job": i, "status": "ok"}`` or ``{"job": i, "status": "error", "error": "..."}``), so
a caller can tell which job was running if NNCodec's C++ core brings the process down.
NNCodec's own prints go to stdout and are not part of the protocol.
"""
from __future__ import annotations

import json
import sys
import traceback

import numpy as np

from nncodec_stubs import stub_frameworks  # this folder: the script's own sys.path[0]

NNCODEC_VERSION = "2.1.3"


stub_frameworks()
from nncodec.nnc import decompress  # noqa: E402
from nncodec.nnc_core.hdsp.hdsp_tool import HdspTool  # noqa: E402


def _read(path: str) -> bytearray:
    with open(path, "rb") as f:
        return bytearray(f.read())


def _arrays(params: dict) -> dict[str, np.ndarray]:
    return {str(name): np.asarray(value) for name, value in params.items()}


def decode_stream(path: str) -> dict[str, np.ndarray]:
    """One non-incremental stream, decoded with ``nnc.decompress``'s defaults."""
    return _arrays(decompress(_read(path)))


def decode_sequence(paths: list[str], hdsp: bool) -> dict[str, np.ndarray]:
    """An incremental sequence with one decoder state; keys ``<step>/<name>``."""
    base = {"parameters": {}, "put_node_depth": {}, "device_id": 0, "parameter_id": {}}
    tool = HdspTool(True) if hdsp else None
    out: dict[str, np.ndarray] = {}
    for step, path in enumerate(paths):
        params, _hls = decompress(_read(path), approx_param_base=base, update_base_param=True,
                                  hdsp_tool=tool if step >= 1 else None, return_hls=True)
        for name, value in _arrays(params).items():
            out[f"{step}/{name}"] = value
    return out


def run_job(job: dict) -> None:
    streams = list(job["streams"])
    if job.get("sequence"):
        arrays = decode_sequence(streams, bool(job.get("hdsp")))
    else:
        if len(streams) != 1:
            raise ValueError("a non-sequence job takes exactly one stream")
        arrays = decode_stream(streams[0])
    np.savez(job["out"], **arrays)


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")


def run_batch(jobs_path: str, results_path: str) -> int:
    with open(jobs_path) as f:
        jobs = json.load(f)
    with open(results_path, "a") as results:
        for i, job in enumerate(jobs):
            index = job.get("index", i)
            results.write(json.dumps({"job": index, "status": "start"}) + "\n")
            results.flush()
            try:
                run_job(job)
                record = {"job": index, "status": "ok"}
            except BaseException as exc:  # NNCodec raises SystemExit and AssertionError too
                if isinstance(exc, KeyboardInterrupt):
                    raise
                record = {"job": index, "status": "error", "error": _describe(exc)}
            results.write(json.dumps(record) + "\n")
            results.flush()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "decode" and len(argv) % 2 == 1:
        for src, dst in zip(argv[1::2], argv[2::2]):
            np.savez(dst, **decode_stream(src))
        return 0
    if len(argv) >= 3 and argv[0] == "sequence":
        hdsp = "--hdsp" in argv[1:]
        rest = [a for a in argv[1:] if a != "--hdsp"]
        np.savez(rest[0], **decode_sequence(rest[1:], hdsp))
        return 0
    if len(argv) == 3 and argv[0] == "batch":
        return run_batch(argv[1], argv[2])
    if argv == ["version"]:
        from importlib.metadata import version
        print(version("nncodec"))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
