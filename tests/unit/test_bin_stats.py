"""benchmarks/bin_stats.py counts the bins of nnr's binarization (code_level_plain)."""
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bin_stats import bins  # noqa: E402


@pytest.mark.parametrize("level, ctx, bypass", [
    (0, 1, 0),     # significance only
    (1, 3, 0),     # + sign + one greater-than zero
    (5, 7, 0),     # 4 greater-than ones and a zero
    (11, 13, 0),   # 10 ones and a zero (the last flag)
    (12, 14, 0),   # 11 ones, remainder 0: prefix zero only
    (13, 15, 1),   # remainder 1: prefix one + zero, one suffix bin
    (14, 15, 1),   # remainder 2
    (15, 16, 2),   # remainder 3: two prefix ones + zero, two suffix bins
])
def test_bins_of_one_level(level, ctx, bypass):
    assert bins(np.array([level])) == (ctx, bypass)


def test_bins_add_up():
    levels = np.array([0, 1, 5, 11, 12, 13, 14, 15])
    assert bins(levels) == (1 + 3 + 7 + 13 + 14 + 15 + 15 + 16, 0 + 0 + 0 + 0 + 0 + 1 + 1 + 2)
