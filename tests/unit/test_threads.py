"""Determinism and thread safety: nnr.encode / nnr.decode called from several Python threads at
once give the same bytes and arrays as the same calls made one after the other (the native
core releases the GIL, so the calls really overlap)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import nnr

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
CONFIGS = [
    {},
    {"dq": False, "scan_order": 2},
    {"codebook": "auto", "scan_order": 1},
    {"row_skip": True, "dq": False},
    {"profile": 0, "scan_order": 3},
    {"qp": -44, "qp_density": 3, "param_opt": False},
]


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, (96, 80)).astype(np.float32)
    w[rng.random(96) < 0.3] = 0
    return {"w": w, "b": rng.normal(0, 0.01, 96).astype(np.float32),
            "conv": rng.laplace(0, 0.02, (16, 8, 3, 3)).astype(np.float32),
            "i": rng.integers(-100, 100, (20, 10)).astype(np.int32)}


JOBS = [(seed, i) for seed in range(3) for i in range(len(CONFIGS))]


def _encode(job: tuple[int, int], threads: int | None = 1) -> bytes:
    seed, i = job
    return nnr.encode(_tensors(seed), threads=threads, **CONFIGS[i])


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and a[k].tobytes() == b[k].tobytes() for k in a)


@pytest.fixture(scope="module")
def sequential() -> dict[tuple[int, int], bytes]:
    return {job: _encode(job) for job in JOBS}


def test_encoding_is_deterministic(sequential) -> None:
    for job in JOBS[:4]:
        assert _encode(job) == sequential[job]
        assert _encode(job, threads=4) == sequential[job]   # the encoder's own worker threads


def test_concurrent_encode(sequential) -> None:
    jobs = JOBS * 3
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(_encode, jobs))
    for job, data in zip(jobs, results):
        assert data == sequential[job], job


def test_concurrent_decode(sequential) -> None:
    streams = list(sequential.values())
    streams += [f.read_bytes() for f in sorted(VECTORS.glob("p*.nnc"))
                if not f.name.split(".")[-2].isdigit() and f.stat().st_size < 40_000]
    expected = [nnr.decode(s, threads=1) for s in streams]
    work = list(range(len(streams))) * 3
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: nnr.decode(streams[i]), work))
    for i, out in zip(work, got):
        assert _same(out, expected[i]), i


def test_concurrent_encode_and_decode(sequential) -> None:
    decoded = {job: nnr.decode(data, threads=1) for job, data in sequential.items()}

    def task(k: int):
        job = JOBS[k % len(JOBS)]
        if k % 2:
            return job, "encode", _encode(job)
        return job, "decode", nnr.decode(sequential[job], threads=2)

    with ThreadPoolExecutor(6) as pool:
        for job, kind, result in pool.map(task, range(4 * len(JOBS))):
            if kind == "encode":
                assert result == sequential[job]
            else:
                assert _same(result, decoded[job])


def test_concurrent_incremental_sequences() -> None:
    """Each thread decodes a whole incremental sequence with its own DecoderState."""
    seqs = {}
    for f in sorted(VECTORS.glob("p1_inc_*.0.nnc")):
        stem = f.name[:-len(".0.nnc")]
        seqs[stem] = [p.read_bytes() for p in sorted(VECTORS.glob(f"{stem}.*.nnc"),
                                                     key=lambda p: int(p.name.split(".")[-2]))]

    def run(stem: str) -> list[dict[str, np.ndarray]]:
        state = nnr.DecoderState()
        return [nnr.decode(s, state=state) for s in seqs[stem]]

    expected = {stem: run(stem) for stem in seqs}
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, list(seqs) * 2))
    for stem, steps in zip(list(seqs) * 2, got):
        assert all(_same(a, b) for a, b in zip(steps, expected[stem])), stem


def test_errors_in_threads_stay_typed() -> None:
    data = _encode(JOBS[0])
    bad = [data[:n] for n in range(5, len(data), max(1, len(data) // 40))]

    def attempt(b: bytes) -> str:
        try:
            nnr.decode(b)
            return "ok"
        except nnr.NnrError as exc:
            return type(exc).__name__

    expected = [attempt(b) for b in bad]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(attempt, bad * 2)) == expected * 2


_NO_THREADS = r"""
import resource, sys, numpy as np, nnr
w = np.random.default_rng(0).normal(0, 0.05, (1024, 1024)).astype(np.float32)
data = nnr.encode({"w": w}, scan_order=1, threads=1)
ref = nnr.decode(data, threads=1)
vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (120 << 20),) * 2)   # no room for 63 stacks
try:
    print("same" if np.array_equal(nnr.decode(data, threads=64)["w"], ref["w"]) else "differs")
except (MemoryError, RuntimeError, nnr.NnrError) as exc:
    print("refused", type(exc).__name__)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_decoding_survives_when_no_thread_can_be_started() -> None:
    """Parallel block-row decoding when the system refuses new threads: the same result (or
    a typed error), never an aborted process."""
    import os
    import subprocess
    import sys
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(nnr.__file__).parents[1]), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", _NO_THREADS], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.split()[0] in ("same", "refused"), proc.stdout
