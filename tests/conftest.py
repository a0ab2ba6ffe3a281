"""Shared test setup: hypothesis profiles, repository paths, and a runner for the ``nnr`` command.

Hypothesis profiles are chosen with the environment variable HYPOTHESIS_PROFILE:

* ``dev`` (default on a workstation): few examples, quick feedback.
* ``ci`` (default when CI=true): more examples, no deadline (shared CI machines are noisy),
  derandomized so that a failure reproduces from the log.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "vectors"
EXAMPLES = REPO / "examples"

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra; tests that need it import it themselves
    settings = None

if settings is not None:
    settings.register_profile(
        "ci", max_examples=300, deadline=None, derandomize=True, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", max_examples=40, deadline=2000)
    _default = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return VECTORS


@dataclass
class CliResult:
    """What one run of the ``nnr`` command did."""
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    raw_stdout: bytes

    def error_line(self) -> str:
        """The single ``nnr: error: ...`` line of a failed run (asserts that form)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got: {self.stderr!r}"
        assert lines[0].startswith("nnr: error: "), lines[0]
        assert "Traceback" not in self.stderr
        return lines[0]


def _nnr_parent() -> str:
    import nnr
    return str(Path(list(nnr.__path__)[0]).parent)


def run_nnr(*args: object, cwd: Path | None = None, stdin: bytes | None = None,
            timeout: float = 300) -> CliResult:
    """Run ``python -m nnr.cli ARGS`` in a subprocess (the same code as the ``nnr`` script)."""
    argv = [str(a) for a in args]
    env = dict(os.environ)
    # The subprocess imports the same nnr as this test process (installed or PYTHONPATH=src).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_nnr_parent(), env.get("PYTHONPATH")) if p)
    env.pop("NNR_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "nnr.cli", *argv], cwd=cwd, input=stdin,
                          capture_output=True, timeout=timeout, env=env)
    return CliResult(argv, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                     proc.stderr.decode("utf-8", "replace"), proc.stdout)


@pytest.fixture
def nnr_cli():
    """``nnr_cli("encode", "in.npz", "-o", "out.nnr")`` -> CliResult."""
    return run_nnr
