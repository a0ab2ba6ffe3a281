"""Fixtures of the conformance tests: the vectors of tests/vectors/ and the NNCodec peer.

* A test that takes an argument named ``vector`` runs once per entry of
  ``tests/vectors/manifest.json`` (the manifest entry, a dict; test id = vector id).
* ``new_decoder_state(vector)`` makes the ``nnr.DecoderState`` for an incremental sequence.
* ``nncodec`` (session scope) builds the NNCodec 2.1.3 environment once with
  ``tests/peer/setup_peer.sh`` and returns a :class:`PeerDriver`. If it cannot be built the tests
  that need it are skipped with the reason; with CI=true they fail instead.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
PEER = REPO / "tests" / "peer"
SETUP_TIMEOUT_S = 1800
DRIVER_TIMEOUT_S = 900


def load_manifest() -> dict:
    with open(VECTORS / "manifest.json") as f:
        return json.load(f)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vector" in metafunc.fixturenames:
        vectors = load_manifest()["vectors"]
        metafunc.parametrize("vector", vectors, ids=[v["id"] for v in vectors])


def _make_state(vector: dict):
    import nnr
    hdsp = bool((vector.get("incremental") or {}).get("hdsp"))
    params = inspect.signature(nnr.DecoderState).parameters
    return nnr.DecoderState(hdsp=hdsp) if "hdsp" in params else nnr.DecoderState()


@pytest.fixture(scope="session")
def new_decoder_state():
    """A factory: ``new_decoder_state(vector)`` -> a fresh ``nnr.DecoderState``.

    HDSP use is passed on only if ``nnr.DecoderState`` takes an ``hdsp`` argument.
    """
    return _make_state


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the NNCodec peer is required: {reason}", pytrace=False)
    pytest.skip(reason)


class PeerDriver:
    """Runs tests/peer/nncodec_driver.py with the peer environment's python."""

    def __init__(self, python: Path) -> None:
        self.python = python
        self.script = PEER / "nncodec_driver.py"

    def _run_once(self, jobs: list[dict], workdir: Path, attempt: int) -> tuple[
            list[dict], subprocess.CompletedProcess]:
        jobs_path = workdir / f"jobs.{attempt}.json"
        results_path = workdir / f"results.{attempt}.jsonl"
        jobs_path.write_text(json.dumps(jobs))
        proc = subprocess.run([str(self.python), str(self.script), "batch", str(jobs_path),
                               str(results_path)], capture_output=True, text=True,
                              timeout=DRIVER_TIMEOUT_S, cwd=workdir)
        lines = results_path.read_text().splitlines() if results_path.exists() else []
        return [json.loads(line) for line in lines if line.strip()], proc

    def decode(self, jobs: list[dict], workdir: Path) -> dict[str, dict]:
        """Run all jobs (see the driver's docstring) in as few processes as possible.

        Returns ``{job index: {"status": "ok" | "error" | "crashed", "error": ...}}``. If NNCodec
        takes the process down, the job that was running is marked ``crashed`` and the driver is
        started again for the jobs after it.
        """
        results: dict[str, dict] = {}
        remaining = list(jobs)
        for attempt in range(len(jobs) + 1):
            if not remaining:
                break
            records, proc = self._run_once(remaining, workdir, attempt)
            started = [r["job"] for r in records if r["status"] == "start"]
            for r in records:
                if r["status"] != "start":
                    results[r["job"]] = r
            unfinished = [j for j in started if j not in results]
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])
            if not unfinished:
                for job in remaining:
                    results.setdefault(job["index"], {
                        "status": "crashed", "error": f"driver exited {proc.returncode} "
                                                      f"before this job: {tail}"})
                break
            results[unfinished[0]] = {"status": "crashed",
                                      "error": f"NNCodec exited {proc.returncode}: {tail}"}
            remaining = [j for j in remaining if j["index"] not in results]
        return results


@pytest.fixture(scope="session")
def nncodec() -> PeerDriver:
    """NNCodec 2.1.3 in its own environment (env NNR_PEER_VENV, default <repo>/.peer-venv)."""
    setup = PEER / "setup_peer.sh"
    try:
        proc = subprocess.run(["bash", str(setup)], capture_output=True, text=True,
                              timeout=SETUP_TIMEOUT_S, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"NNCodec peer environment could not be built: {exc}")
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        _unavailable(f"NNCodec peer environment could not be built ({setup.name} exited "
                     f"{proc.returncode}): {tail}")
    venv = Path(proc.stdout.strip().splitlines()[-1])
    python = venv / "bin" / "python"
    if not python.exists():
        _unavailable(f"no python in the NNCodec peer environment {venv}")
    return PeerDriver(python)
