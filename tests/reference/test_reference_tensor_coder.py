"""Round trips of the oracle's NDU payload coder, and payloads pinned to NNCodec's bytes."""
from __future__ import annotations

import random

import numpy as np
import pytest

from nnr.entropy.spec import TensorCoding, TensorSpec

from . import tensor_coder as tc
from .tables import DQ_NEXT_STATE


# ---------------------------------------------------------------------------------------------
# helpers: deterministic inputs (random.Random is stable across Python versions and platforms)

def rand_q(seed: int, n: int, p: float = 0.6, zero: float = 0.3, big: bool = False) -> list[int]:
    """Two-sided geometric indices: P(0) >= zero, P(|q| > m) ~ p^m."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < zero:
            out.append(0)
            continue
        m = 1
        while rng.random() < p:
            m += 1
        out.append(-m if rng.getrandbits(1) else m)
    if big and n:
        out[rng.randrange(n)] = 70000 + rng.randrange(1000)
    return out


def k_from_q(spec: TensorSpec, q, row_skip=None) -> np.ndarray:
    """Map indices q (C order) to multipliers k along the decoder's DQ state path."""
    q = np.asarray(q, np.int64).reshape(-1)
    k = np.zeros(spec.size, np.int32)
    plan, state = tc._plan(spec), 0
    for _, row, seg in plan.segments:
        if row_skip is not None and row_skip[row]:
            for _ in range(spec.cols if spec.dq else 0):
                state = DQ_NEXT_STATE[state][0]
            continue
        for pos in seg:
            k[pos] = tc._k_from_q(int(q[pos]), state) if spec.dq else q[pos]
            if spec.dq:
                state = DQ_NEXT_STATE[state][int(q[pos]) & 1]
    return k


def round_trip(ks, specs, codings, param_opt=True) -> bytes:
    payload, eps = tc.encode_payload(ks, specs, codings, param_opt)
    levels, got, consumed = tc.decode_payload(payload, specs)
    assert consumed == len(payload)
    detailed, _ = tc.decode_payload_detailed(payload, specs)
    for k, lv, c_in, c_out, spec, ep, d in zip(ks, levels, codings, got, specs, eps, detailed):
        assert lv.dtype == np.int32 and lv.shape == (spec.size,)
        assert np.array_equal(lv, np.asarray(k).reshape(-1))
        if spec.has_qp:
            assert c_out.qp == c_in.qp
        assert c_out.hdsp == bool(c_in.hdsp)
        assert (c_out.row_skip is None) == (c_in.row_skip is None)
        if c_in.row_skip is not None:
            assert np.array_equal(c_out.row_skip, c_in.row_skip)
        plan = tc._plan(spec)
        assert len(ep) == max(plan.block_rows - 1, 0)
        assert ep == d.entry_points
        assert all(0 <= e.cabac_offset < 256 and 0 <= e.dq_state < 8 for e in ep)
        assert all(e.dq_state == 0 for e in ep) or spec.dq
        assert [e.bit_position for e in ep] == sorted(e.bit_position for e in ep)
        assert all(e.bit_position >= d.level_start for e in ep)
        if not param_opt:
            assert not c_out.init_sets.any()
    return payload


# ---------------------------------------------------------------------------------------------
# round-trip matrix

SHAPES = [(1, 1), (1, 13), (13, 1), (7, 9), (17, 33), (70, 65)]


@pytest.mark.parametrize("dq", [False, True])
@pytest.mark.parametrize("scan", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_dq_scan_shapes(dq: bool, scan: int, shape: tuple[int, int]) -> None:
    rows, cols = shape
    spec = TensorSpec(rows=rows, cols=cols, scan_order=scan, dq=dq)
    q = rand_q(rows * 100 + cols + scan, rows * cols, big=rows * cols > 100)
    round_trip([k_from_q(spec, q)], [spec], [TensorCoding(qp=-38)])


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("scan", [0, 2])
def test_single_block_row_and_legacy(legacy: bool, scan: int) -> None:
    spec = TensorSpec(rows=12, cols=40, scan_order=scan, dq=True, profile=0, legacy_v03=legacy)
    round_trip([k_from_q(spec, rand_q(5, 480))], [spec], [TensorCoding(qp=-30)])


@pytest.mark.parametrize("n_gtx", [1, 2, 5, 11])
@pytest.mark.parametrize("size_offset", [(1, 0), (2, 0), (2, 1), (7, 0), (7, 6), (7, 3), (40, 9)])
def test_codebooks(n_gtx: int, size_offset: tuple[int, int]) -> None:
    size, off = size_offset
    spec = TensorSpec(rows=9, cols=11, scan_order=1, codebook_size=size, codebook_zero_offset=off,
                      cabac_unary_length=n_gtx)
    rng = random.Random(size * 31 + off)
    q = [0 if rng.random() < 0.3 else rng.randrange(size) - off for _ in range(99)]
    q[0], q[1] = -off, size - 1 - off                 # both ends of the codebook
    round_trip([k_from_q(spec, q)], [spec], [TensorCoding(qp=-32)])


@pytest.mark.parametrize("rows,expected", [(8, "fe80"), (20, "7f80")])
def test_codebook_size_one_codes_no_bins(rows: int, expected: str) -> None:
    # Only the terminating bin; with 3 block rows the range was set to 256 first (NNCodec 2.1.3
    # encodeLayer of such a tensor gives the same two payloads).
    a = TensorSpec(rows=rows, cols=9, scan_order=1, codebook_size=1, dq=True, has_qp=False)
    assert round_trip([np.zeros(rows * 9, np.int32)], [a], [TensorCoding()]).hex() == expected


@pytest.mark.parametrize("dq", [False, True])
@pytest.mark.parametrize("scan", [0, 1, 3])
@pytest.mark.parametrize("tca,hdsp", [(True, False), (False, True), (True, True)])
def test_tca_hdsp_row_skip(dq: bool, scan: int, tca: bool, hdsp: bool) -> None:
    rows, cols = 37, 21
    rng = random.Random(rows + 3 * scan + 5 * dq + 7 * tca + 11 * hdsp)
    base = np.array([0 if rng.random() < 0.5 else rng.randrange(-5, 6) for _ in range(rows * cols)],
                    np.int32) if tca else None
    hist = np.array([rng.random() < 0.4 for _ in range(rows * cols)], np.uint8) if hdsp else None
    skip = np.array([rng.random() < 0.3 for _ in range(rows)], np.uint8)
    spec = TensorSpec(rows=rows, cols=cols, scan_order=scan, dq=dq, parent_node_id_present=True,
                      tca_base=base, hdsp_history=hist)
    q = np.array(rand_q(scan, rows * cols), np.int64).reshape(rows, cols)
    q[skip.astype(bool)] = 0
    k = k_from_q(spec, q, skip)
    round_trip([k], [spec], [TensorCoding(qp=-44, hdsp=hdsp, row_skip=skip)])
    round_trip([k], [spec], [TensorCoding(qp=-44, hdsp=hdsp, row_skip=skip)], param_opt=False)


def test_row_skip_all_rows_and_zero_rows_not_flagged() -> None:
    spec = TensorSpec(rows=16, cols=16, scan_order=1, dq=True)
    round_trip([np.zeros(256, np.int32)], [spec],
               [TensorCoding(qp=-38, row_skip=np.ones(16, np.uint8))])
    q = np.array(rand_q(9, 256), np.int64).reshape(16, 16)
    q[3] = 0
    round_trip([k_from_q(spec, q)], [spec], [TensorCoding(qp=-38, row_skip=np.zeros(16, np.uint8))])


@pytest.mark.parametrize("n_gtx", [5, 11])
@pytest.mark.parametrize("legacy", [False, True])
def test_unary_length_and_many_tensors(n_gtx: int, legacy: bool) -> None:
    shapes = [(30, 1), (16, 24), (1, 7), (9, 50), (40, 3), (1, 1)]
    specs = [TensorSpec(rows=r, cols=c, scan_order=1, dq=True, cabac_unary_length=n_gtx,
                        profile=0 if legacy else 1, legacy_v03=legacy, has_qp=i != 2)
             for i, (r, c) in enumerate(shapes)]
    ks = [k_from_q(s, rand_q(i, s.size, p=0.85, big=True)) for i, s in enumerate(specs)]
    round_trip(ks, specs, [TensorCoding(qp=-60 + 9 * i) for i in range(len(specs))])


@pytest.mark.parametrize("qd", [0, 1, 2, 3, 7])
def test_qp_field_width(qd: int) -> None:
    spec = TensorSpec(rows=3, cols=3, qp_density=qd)
    lo, hi = -(1 << (5 + qd)), (1 << (5 + qd)) - 1
    for qp in (lo, -1, 0, hi):
        round_trip([np.arange(9, dtype=np.int32) - 4], [spec], [TensorCoding(qp=qp)])
    with pytest.raises(ValueError):
        tc.encode_payload([np.zeros(9, np.int32)], [spec], [TensorCoding(qp=hi + 1)])


def test_invalid_inputs() -> None:
    dq = TensorSpec(rows=2, cols=3, dq=True)
    with pytest.raises(ValueError):     # state 0 only holds even multipliers
        tc.encode_payload([np.array([1, 0, 0, 0, 0, 0], np.int32)], [dq], [TensorCoding()])
    with pytest.raises(ValueError):     # after q=1 (k=2) the state is 2: even again
        tc.encode_payload([np.array([2, 3, 0, 0, 0, 0], np.int32)], [dq], [TensorCoding()])
    tc.encode_payload([np.array([2, 4, 1, 0, 0, 0], np.int32)], [dq], [TensorCoding()])
    rs = TensorSpec(rows=2, cols=3)
    with pytest.raises(ValueError):     # a flagged row must be zero
        tc.encode_payload([np.array([0, 0, 1, 0, 0, 0], np.int32)], [rs],
                          [TensorCoding(row_skip=np.array([1, 0], np.uint8))])
    with pytest.raises(ValueError):     # no row-skip syntax for 1-D tensors
        tc.encode_payload([np.zeros(6, np.int32)], [TensorSpec(rows=6, cols=1)],
                          [TensorCoding(row_skip=np.zeros(6, np.uint8))])
    with pytest.raises(ValueError):     # HDSP needs a parent node id
        tc.encode_payload([np.zeros(6, np.int32)], [rs], [TensorCoding(hdsp=True)])
    cb = TensorSpec(rows=2, cols=3, codebook_size=3, codebook_zero_offset=0)
    with pytest.raises(ValueError):     # sign inferred positive
        tc.encode_payload([np.array([-1, 0, 0, 0, 0, 0], np.int32)], [cb], [TensorCoding()])
    with pytest.raises(ValueError):     # beyond the codebook
        tc.encode_payload([np.array([3, 0, 0, 0, 0, 0], np.int32)], [cb], [TensorCoding()])


def test_decoder_rejects_garbage() -> None:
    spec = TensorSpec(rows=4, cols=4)
    payload, _ = tc.encode_payload([np.arange(16, dtype=np.int32)], [spec], [TensorCoding()])
    with pytest.raises(ValueError):
        tc.decode_payload(payload[: len(payload) // 2], [spec])


def test_scan_positions() -> None:
    assert tc.scan_positions(2, 3, 0) == [0, 1, 2, 3, 4, 5]
    pos = tc.scan_positions(10, 12, 1)                # 8x8 blocks, truncated at the borders
    assert pos[:9] == [0, 1, 2, 3, 4, 5, 6, 7, 12]
    assert pos[64:68] == [8, 9, 10, 11]
    assert pos[96:99] == [96, 97, 98] and sorted(pos) == list(range(120))
    assert tc.scan_positions(9, 1, 3) == list(range(9))


# ---------------------------------------------------------------------------------------------
# payloads pinned to NNCodec

def _pin_cases() -> dict[str, tuple[list, list, list, bool]]:
    """Name -> (ks, specs, codings, param_opt). The expected hex strings in PINNED were produced
    by NNCodec's own deepCABAC extension from these inputs (2.1.3: Encoder.iae_v / initCtxModels
    / encodeLayer / encodeLayer2 / finish in the peer venv; legacy cases: NNCodec 0.3.1's
    extension built from fraunhoferhhi/nncodec v0.3.1): the qp (iae), then each tensor, then
    finish(). Entry points were compared with NNCodec's decodeLayerAndCreateEPs."""
    cases = {}

    def add(name, tensors, param_opt=True):
        ks, specs, codings = [], [], []
        for spec, q, coding in tensors:
            specs.append(spec)
            codings.append(coding)
            ks.append(k_from_q(spec, q, coding.row_skip))
        cases[name] = (ks, specs, codings, param_opt)

    add("dq_raster", [(TensorSpec(rows=5, cols=7, dq=True), rand_q(1, 35), TensorCoding(qp=-38))])
    add("dq_8x8_with_bias", [
        (TensorSpec(rows=20, cols=9, dq=True, scan_order=1), rand_q(2, 180), TensorCoding(qp=-40)),
        (TensorSpec(rows=9, cols=1, dq=True, scan_order=1), rand_q(3, 9, p=0.9),
         TensorCoding(qp=-75))])
    rng = random.Random(4)
    q = [rng.randrange(-2, 3) for _ in range(36)]
    q[6:12] = [0] * 6
    cb = TensorSpec(rows=6, cols=6, codebook_size=5, codebook_zero_offset=2)
    skip = np.array([0, 1, 0, 0, 0, 0], np.uint8)
    add("codebook_row_skip", [(cb, q, TensorCoding(qp=-32, row_skip=skip))])
    base = np.array([0 if rng.random() < 0.5 else rng.randrange(-4, 5) for _ in range(120)],
                    np.int32)
    hist = np.array([rng.random() < 0.5 for _ in range(120)], np.uint8)
    q = rand_q(5, 120)
    q[24:36] = [0] * 12
    skip = np.zeros(10, np.uint8)
    skip[2] = 1
    add("tca_hdsp_row_skip", [(TensorSpec(rows=10, cols=12, dq=True, parent_node_id_present=True,
                                          tca_base=base, hdsp_history=hist),
                               q, TensorCoding(qp=-44, hdsp=True, row_skip=skip))])
    add("legacy_8x8_two_block_rows", [
        (TensorSpec(rows=16, cols=10, dq=True, scan_order=1, profile=0, legacy_v03=True),
         rand_q(6, 160, p=0.75), TensorCoding(qp=-38)),
        (TensorSpec(rows=10, cols=1, dq=True, profile=0, legacy_v03=True), rand_q(7, 10, p=0.95),
         TensorCoding(qp=-75))])
    legacy_one_row = TensorSpec(rows=12, cols=20, scan_order=2, profile=0, legacy_v03=True,
                                cabac_unary_length=5)
    add("legacy_one_block_row", [(legacy_one_row, rand_q(8, 240, p=0.8), TensorCoding(qp=-30))])
    one_row = TensorSpec(rows=12, cols=20, scan_order=2, cabac_unary_length=5)
    add("one_block_row_no_param_opt", [(one_row, rand_q(8, 240, p=0.8), TensorCoding(qp=-30))],
        param_opt=False)
    a = TensorSpec(rows=20, cols=9, scan_order=1, codebook_size=1, dq=True)
    add("codebook_size_one_resets_range", [   # no bins, but range := 256 at each block row
        (a, [0] * 180, TensorCoding(qp=-20)),
        (TensorSpec(rows=4, cols=4, dq=True), rand_q(3, 16), TensorCoding(qp=-38))])
    return cases


PINNED = {
    "dq_raster": (
        "d96c81c5291c369ec9c15592cd4098f0a0f785947a6f8d53fc"
    ),
    "dq_8x8_with_bias": (
        "d78f5791db72b82f72ffee746e5965e4f30a07cf28a2b5570d55d8e3316d9638da89958d8b6693c88090"
        "c5d65476fd0960922490182c3580edd9ab4cfe1043a9952ec360d39e6e6d785671670db4974f0c8636ca"
        "7cd6c97fd3ee8d1821fb8fc55a9eef1877a3b096ba09579a272ded13088e94f2cf2b1270"
    ),
    "codebook_row_skip": (
        "e01589529c027d8070cd0d45c780"
    ),
    "tca_hdsp_row_skip": (
        "d41870601450bc8256589c3d09e9d2be083cdcfbf11aed8ce2a1f046e44a0b81453ec342f8da235a18c7"
        "ef74b5128f188f2bfd39c907c18ccc09b283b82780"
    ),
    "legacy_8x8_two_block_rows": (
        "d94435ea0831ebd3b3df9693a0dd95d700b5540039beafc8279ae45252fa6559ee485ebd82e8b8b995ed"
        "97c9a52a0edc0bae0455d44cf20466f4fd93eca5aee415969b8ea42e71dae067982c5cdb96982df05df9"
        "d235e04504a8c2dea63461694dfb287514be93dc002ed0908103f195a7cc814446bec3e805dffa294823"
        "9fe0"
    ),
    "legacy_one_block_row": (
        "e1eb6ced215a413f20776ebc2fbde60a12be8bde23bf11fc2f023904147e72e4847e9f5cbba6282404e1"
        "ed418430bcafa6350313fcd42cf62dca9474da45d3119caac0b98cec2b66e3ac54aea4f0aa39f805827c"
        "7bd2da92f802eb05f8188eb9905e21e2b8a246318097f370fab445af530b70f204e6b69396ffb155ad55"
        "d6c9ae5349b96a1e8fc0"
    ),
    "one_block_row_no_param_opt": (
        "e1648042b478023389cdd4b9b105788bc2a64489dae0be27665daecdcb62a99af5edfda6a5d9df17ac54"
        "e756a03c5edfc9c0ffe6fb6ef2407ee437ee7b8429a276937668e61cbbf7a0170cb5dd5e74c8f1cdc8f8"
        "b615c8e900f335aeb9ed4c7573661e012adb2a002e40064b899f80eeb7d1cdb0236f9a8d5c4fae4030f9"
        "3464b653d2e555df01f1f8"
    ),
    "codebook_size_one_resets_range": (
        "eb812001ae7114bf2a8852eb843ce21e"
    ),
}
PINNED_EPS = {   # (P, cabac_offset, dq_state) per tensor, as NNCodec derives them
    "dq_8x8_with_bias": [[(407, 88, 2), (675, 201, 7)], []],
    "legacy_8x8_two_block_rows": [[(493, 235, 1)], []],
    "codebook_size_one_resets_range": [[(8, 218, 0), (8, 218, 0)], []],
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_payloads(name: str) -> None:
    ks, specs, codings, param_opt = _pin_cases()[name]
    payload = round_trip(ks, specs, codings, param_opt)
    assert payload.hex() == PINNED[name]
    if name in PINNED_EPS:
        _, eps = tc.encode_payload(ks, specs, codings, param_opt)
        assert [[(e.bit_position, e.cabac_offset, e.dq_state) for e in t] for t in eps] \
            == PINNED_EPS[name]
