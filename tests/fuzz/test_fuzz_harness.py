"""The atheris harness's per-input check (fuzz_decode.one_input) on its seeds: conformance
vectors and the malformed corpus pass through it without a finding (no atheris needed)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "malformed"))

from fuzz_decode import one_input  # noqa: E402
from known_bugs import KNOWN_BUGS  # noqa: E402

CORPUS = HERE.parent / "malformed" / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
SEEDS = sorted(p for p in (HERE.parent / "vectors").glob("*.nnc") if p.stat().st_size <= 16384)
# hostile declarations run under an address-space limit in test_malformed.py
CORPUS_FILES = sorted(CORPUS / n for n, v in MANIFEST.items()
                      if v["family"] not in ("res", "dims") and n not in KNOWN_BUGS)


def test_vectors_are_no_findings() -> None:
    assert len(SEEDS) > 40
    for path in SEEDS:
        one_input(path.read_bytes())


def test_corpus_is_no_finding() -> None:
    for path in CORPUS_FILES:
        one_input(path.read_bytes())


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff" * 64])
def test_trivial_inputs(data: bytes) -> None:
    one_input(data)


def test_a_finding_is_raised() -> None:
    import fuzz_decode
    with pytest.raises(AssertionError):
        fuzz_decode._check_decoded({"w": [1, 2]})
