"""Shared helpers of the adapter tests: optional frameworks and the packaged real models.

A test needing a framework or a model package that is not installed is skipped with the
reason; with ``CI=true`` it fails instead (CI installs ``nnr[frameworks]`` and the model
packages, see docs/adapters.md).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() == "true"


def need(module: str, install: str | None = None):
    """Import ``module`` or skip (fail under CI=true) naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        hint = install or module
        if CI:
            pytest.fail(f"{module} is not installed (pip install {hint}); CI must install it")
        pytest.skip(f"{module} is not installed (pip install {hint})")


def package_file(package: str, *parts: str, install: str | None = None) -> Path:
    """A data file inside an installed package (skip / fail under CI when missing)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        hint = install or package
        if CI:
            pytest.fail(f"model package {package} is not installed (pip install {hint})")
        pytest.skip(f"model package {package} is not installed (pip install {hint})")
    path = Path(spec.origin).parent.joinpath(*parts)
    assert path.exists(), path
    return path


def max_rel(a, b) -> float:
    """Largest difference relative to the largest magnitude of the reference."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))
