"""The oracle's arithmetic coding engine and context models."""
from __future__ import annotations

import random

import pytest

from .contexts import ContextModel, InitSetEstimator
from .engine import Decoder, Encoder
from .tables import EST_BITS, INIT_SETS, LPS_TABLE, UPDATE_CURVE

# A fixed bin sequence: "B<b>" is a bypass bin, "<c>:<b>" a regular bin on context c (every
# context starts from init set 0). It is exactly the sequence NNCodec 2.1.3 codes for
#     Encoder().iae_v(8, -38); initCtxModels(1, 0)
#     encodeLayer(int32 [0, 3, -1, 0, 0, 7, 0, -2, 40, 1], dq 0, scan 0, profile 1, ...)
# (qp bits, 39 init-set flags, then the levels with one greater-than flag); its finish() gave the
# pinned bytes below (NNCodec's deepCABAC extension, peer venv, run once).
PINNED_SEQUENCE = (
    "B1 B1 B0 B1 B1 B0 B1 B0 " + "0:0 " * 39
    + "1:0 1:1 2:0 3:1 4:1 5:0 B0 6:1 7:1 8:0 9:0 1:0 1:1 2:0 3:1 4:1 5:1 10:0 B1 B0 6:0 1:1 2:1 "
      "8:1 4:0 9:1 11:0 3:1 4:1 5:1 10:1 12:1 13:1 14:0 B0 B0 B1 B1 B1 6:1 7:0 3:0")
PINNED_BYTES = "d9b30122d303c009c7f0"


def _parse(seq: str) -> list[tuple[int | None, int]]:
    out = []
    for tok in seq.split():
        if tok[0] == "B":
            out.append((None, int(tok[1])))
        else:
            c, b = tok.split(":")
            out.append((int(c), int(b)))
    return out


def _encode(seq, init=None, ep_at=()) -> bytes:
    enc, ctxs = Encoder(), {}
    for i, (c, b) in enumerate(seq):
        if i in ep_at:
            enc.entry_point_start()
        if c is None:
            enc.encode_bypass(b)
        elif c == "T":
            enc.encode_terminate(b)
        else:
            enc.encode_bin(ctxs.setdefault(c, ContextModel((init or {}).get(c, 0))), b)
    return enc.finish()


def _decode(data: bytes, seq, init=None, ep_at=()) -> tuple[list[int], int]:
    dec, ctxs, out = Decoder(data), {}, []
    for i, (c, _) in enumerate(seq):
        if i in ep_at:
            dec.entry_point_start()
        if c is None:
            out.append(dec.decode_bypass())
        elif c == "T":
            out.append(dec.decode_terminate())
        else:
            out.append(dec.decode_bin(ctxs.setdefault(c, ContextModel((init or {}).get(c, 0)))))
    assert dec.decode_terminate() == 1
    return out, dec.bytes_consumed()


def test_pinned_bytes_equal_nncodec() -> None:
    seq = _parse(PINNED_SEQUENCE)
    data = _encode(seq)
    assert data.hex() == PINNED_BYTES
    bins, consumed = _decode(data, seq)
    assert bins == [b for _, b in seq]
    assert consumed == len(data)


def test_empty_stream_is_one_terminating_bin() -> None:
    data = Encoder().finish()
    assert data.hex() == "fe80"                       # NNCodec: Encoder().finish() == fe80
    dec = Decoder(data)
    assert dec.decode_terminate() == 1 and dec.bytes_consumed() == 2


@pytest.mark.parametrize("seed", range(12))
def test_random_bins_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 10, 200, 3000])
    p_one = rng.random()
    seq, init = [], {c: rng.randrange(9) for c in range(6)}
    for _ in range(n):
        kind = rng.random()
        if kind < 0.15:
            seq.append((None, rng.randrange(2)))
        elif kind < 0.17:
            seq.append(("T", 0))                     # a terminating bin 0 in mid-stream
        else:
            seq.append((rng.randrange(6), int(rng.random() < p_one)))
    ep_at = set(rng.sample(range(n), min(n, 3))) if rng.random() < 0.5 else set()
    data = _encode(seq, init, ep_at)
    bins, consumed = _decode(data, seq, init, ep_at)
    assert bins == [b for _, b in seq]
    assert consumed == len(data)
    assert data[-1] != 0                              # ends in the stop bit + zero padding


def test_bit_position_counts_shifts() -> None:
    rng = random.Random(7)
    seq = [(rng.choice([None, 0, 1]), rng.randrange(2)) for _ in range(500)]
    enc, ectx, marks = Encoder(), {}, []
    for c, b in seq:
        if c is None:
            enc.encode_bypass(b)
        else:
            enc.encode_bin(ectx.setdefault(c, ContextModel()), b)
        marks.append(enc.shifts)
    data = enc.finish()
    dec, dctx = Decoder(data), {}
    for (c, _), mark in zip(seq, marks):
        if c is None:
            dec.decode_bypass()
        else:
            dec.decode_bin(dctx.setdefault(c, ContextModel()))
        assert dec.shifts == mark


def test_tables_shape() -> None:
    assert len(LPS_TABLE) == 256 and LPS_TABLE[0] == 128 and LPS_TABLE[32 * 7] == 228
    assert UPDATE_CURVE[:3] == (2512, 2288, 2064) and UPDATE_CURVE[-1] == 0
    assert INIT_SETS[4] == (2, 6, 962, 30)
    assert len(EST_BITS) == 1024 and EST_BITS[512] == (32968, 32568)


def test_context_update_and_reset() -> None:
    ctx = ContextModel(2)
    assert (ctx.s0, ctx.s01, ctx.shift0, ctx.shift1) == (95, 3039, 5, 4)
    assert ctx.mps == 1
    for _ in range(50):
        ctx.update(0)
    assert ctx.mps == 0 and -128 <= ctx.s0 <= 127
    ctx.reset()
    assert (ctx.s0, ctx.s01) == (95, 3039)
    # rLPS: the shift is applied before abs()
    ctx.s01 = -129
    assert ctx.lps_range(510) == LPS_TABLE[0xE0 + 2]


def test_init_set_estimator_prefers_default_on_ties() -> None:
    est = InitSetEstimator()
    assert est.best() == 0
    for _ in range(400):
        est.add(1)
    assert est.best() in (2, 5)   # the sets that start near P(1) = 0.87
