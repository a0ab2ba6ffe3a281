"""Resource limits: what an NDU may declare for the payload bytes it carries (nnr.limits),
enforced by the NDU parser before anything is allocated.

Hostile declarations (tiny streams asking for 2^24..2^62 elements) are in the corpus
(``res_*``, ``dims_*``; test_malformed.py runs them under an address-space limit). Here: the
policy itself, that real and legitimately cheap streams decode under the defaults, and that
the limits are configurable.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import nnr
from nnr.bitstream.stream import StreamContext, parse_stream
from nnr.errors import ResourceLimitError
from nnr.limits import DEFAULTS, NduTensor, check_dims, check_ndu, limit_values

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "vectors"
sys.path.insert(0, str(HERE))
import make_corpus as mc  # noqa: E402


def limits(**kw: int) -> nnr.DecodeLimits:
    return nnr.DecodeLimits(**kw)


# --- the policy -------------------------------------------------------------------------------
def test_defaults() -> None:
    assert DEFAULTS.max_elements_per_payload_byte == 2000
    assert DEFAULTS.free_elements == 4096
    assert DEFAULTS.max_sparse_elements == 1 << 26
    assert limit_values(None) == DEFAULTS
    assert limit_values(nnr.DecodeLimits()) == DEFAULTS      # one set of defaults
    assert limit_values(SimpleNamespace()).free_elements == 4096      # fields absent: defaults
    assert limit_values(limits(free_elements=7)).free_elements == 7


def test_budget_is_per_payload_byte() -> None:
    budget = 2000 * 100 + 4096
    check_ndu([NduTensor(budget, 1)], 100, None)
    with pytest.raises(ResourceLimitError, match="per byte"):
        check_ndu([NduTensor(budget + 1, 1)], 100, None)
    # BLOCK: the tensors share the payload
    with pytest.raises(ResourceLimitError):
        check_ndu([NduTensor(budget // 2 + 1, 1), NduTensor(budget // 2 + 1, 1)], 100, None)


def test_cheap_tensors_count_against_the_sparse_limit() -> None:
    n = check_ndu([NduTensor(4096, 4096, "codebook")], 3, None)
    assert n == 1 << 24
    n = check_ndu([NduTensor(2, 1 << 24, "row_skip")], 3, None, n)
    assert n == 3 << 24
    with pytest.raises(ResourceLimitError, match="max_sparse_elements"):
        check_ndu([NduTensor(1 << 13, 1 << 13, "codebook")], 3, None, n)
    # a cheap tensor beside dense ones: the dense ones must still fit the budget
    with pytest.raises(ResourceLimitError, match="coded one by one"):
        check_ndu([NduTensor(1 << 20, 2, "row_skip"), NduTensor(1 << 20, 1)], 3, None)


def test_row_skipping_still_codes_one_bin_per_row() -> None:
    with pytest.raises(ResourceLimitError, match="rows"):
        check_ndu([NduTensor(1 << 22, 2, "row_skip")], 10, None)
    check_ndu([NduTensor(20000, 1000, "row_skip")], 10, None)


def test_dimensions_fit_the_core() -> None:
    for rows, cols in [(1 << 32, 1), (0, 1 << 32), (1 << 32, 0)]:
        with pytest.raises(ResourceLimitError, match="2\\^32"):
            check_ndu([NduTensor(rows, cols)], 1 << 40, None)
    check_dims([1] * 64)
    with pytest.raises(ResourceLimitError, match="64"):
        check_dims([1] * 65)


def test_configurable() -> None:
    lim = limits(max_elements_per_payload_byte=10, free_elements=0)
    check_ndu([NduTensor(100, 1)], 10, lim)
    with pytest.raises(ResourceLimitError):
        check_ndu([NduTensor(101, 1)], 10, lim)
    lim = limits(max_sparse_elements=1 << 30)
    check_ndu([NduTensor(1 << 14, 1 << 14, "codebook")], 3, lim)


# --- streams ----------------------------------------------------------------------------------
def test_conformance_vectors_parse_under_the_defaults() -> None:
    files = sorted(VECTORS.glob("*.nnc"))
    assert len(files) >= 60
    for f in files:
        parse_stream(f.read_bytes())


def test_cheap_streams_nnr_writes_decode_under_the_defaults() -> None:
    zeros = np.zeros((2048, 2048), np.float32)
    zeros[5, 7] = 0.25
    rowskip = nnr.encode({"w": zeros}, qp=-30, dq=False, row_skip=True, threads=1)
    const = nnr.encode({"c": np.full((2048, 2048), 0.5, np.float32)}, codebook="on", threads=1)
    for data, name in [(rowskip, "w"), (const, "c")]:
        assert len(data) < 2048 * 2048 // 2000        # coded below the dense budget
        out = nnr.decode(data, threads=1)
        assert out[name].shape == (2048, 2048)
    assert nnr.decode(rowskip)["w"][5, 7] != 0


def test_sparse_elements_add_up_over_the_stream() -> None:
    cb1 = (0, 1, 0, 0)
    data = mc.str_unit() + mc.mps_unit() + b"".join(
        mc.ndu_unit(name=f"t{i}".encode() + b"\0", dims=(1 << 10, 1 << 10), codebook=cb1)
        for i in range(5))
    parse_stream(data)       # 5 x 2^20 elements: within the default 2^26
    ctx = StreamContext(limits=limits(max_sparse_elements=4 << 20))
    with pytest.raises(ResourceLimitError, match="unit 6"):
        parse_stream(data, ctx)


def test_decode_limits_still_apply() -> None:
    data = nnr.encode({"w": np.ones((64, 64), np.float32)}, threads=1)
    with pytest.raises(ResourceLimitError):
        nnr.decode(data, limits=nnr.DecodeLimits(max_tensor_elements=100))
    with pytest.raises(ResourceLimitError):
        nnr.decode(data, limits=nnr.DecodeLimits(max_total_elements=100))
    with pytest.raises(ResourceLimitError):
        nnr.inspect(data, limits=nnr.DecodeLimits(max_tensor_elements=100))
    assert nnr.inspect(data, limits=nnr.DecodeLimits(max_tensor_elements=4096)).tensors


def test_decode_hands_its_limits_to_the_parser() -> None:
    const = nnr.encode({"c": np.full((512, 512), 0.5, np.float32)}, codebook="on", threads=1)
    with pytest.raises(ResourceLimitError, match="max_sparse_elements"):
        nnr.decode(const, limits=limits(max_sparse_elements=1000))
