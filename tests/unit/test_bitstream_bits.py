"""BitReader / BitWriter: descriptor examples (notes §4.1), round trips, bounds, errors."""
from __future__ import annotations

import random
import struct

import pytest

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.errors import ConfigError, NonConformingBitstreamError, TruncatedBitstreamError


def bits_of(w: BitWriter) -> str:
    data = w.getvalue()
    return "".join(f"{b:08b}" for b in data)[: w.bit_position]


def reader_from_bits(bits: str) -> BitReader:
    padded = bits + "0" * (-len(bits) % 8)
    return BitReader(int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b"")


@pytest.mark.parametrize("k, value, bits", [
    (1, 0, "10"),
    (1, 4, "0110"),
    (7, 16, "10010000"),
    (11, 3711, "01011001111111"),
    (0, 0, "1"),
    (0, 1, "010"),
    (0, 2, "011"),
    (0, 3, "00100"),
    (2, 3, "111"),
    (2, 4, "01000"),
])
def test_ue_examples(k: int, value: int, bits: str) -> None:
    w = BitWriter()
    w.ue(k, value)
    assert bits_of(w) == bits
    assert reader_from_bits(bits).ue(k) == value


@pytest.mark.parametrize("k, value, mapped", [
    (7, 0, 0), (7, 1, 1), (7, -1, 2), (7, 2, 3), (7, -2, 4), (2, -3, 6), (2, 3, 5),
])
def test_ie_mapping(k: int, value: int, mapped: int) -> None:
    w1, w2 = BitWriter(), BitWriter()
    w1.ie(k, value)
    w2.ue(k, mapped)
    assert bits_of(w1) == bits_of(w2)
    assert reader_from_bits(bits_of(w1)).ie(k) == value


def test_u_i_msb_first() -> None:
    w = BitWriter()
    w.u(1, 1)
    w.u(3, 5)
    w.i(4, -2)
    w.i(13, 0)
    w.u(3, 2)
    assert bits_of(w) == "1" + "101" + "1110" + "0" * 13 + "010"
    r = BitReader(w.getvalue())
    assert (r.u(1), r.u(3), r.i(4), r.i(13), r.u(3)) == (1, 5, -2, 0, 2)


def test_wide_fields_round_trip() -> None:
    value = int.from_bytes(bytes(range(64)), "big")
    w = BitWriter()
    w.u(3, 5)
    w.u(512, value)
    w.u(256, (1 << 256) - 1)
    r = BitReader(w.getvalue())
    assert r.u(3) == 5
    assert r.u(512) == value
    assert r.u(256) == (1 << 256) - 1


def test_flt_is_little_endian() -> None:
    w = BitWriter()
    w.flt(1.0)
    assert w.getvalue() == struct.pack("<f", 1.0) == bytes([0, 0, 0x80, 0x3F])
    w2 = BitWriter()
    w2.u(1, 1)
    w2.flt(-2.5)      # unaligned floats are allowed
    r = BitReader(w2.getvalue())
    assert r.u(1) == 1
    assert r.flt() == -2.5


def test_st_round_trip_and_alignment() -> None:
    w = BitWriter()
    w.st("conv1.weight")
    w.st("")
    w.st("äöü")
    assert w.getvalue() == b"conv1.weight\0\0" + "äöü".encode() + b"\0"
    r = BitReader(w.getvalue())
    assert [r.st(), r.st(), r.st()] == ["conv1.weight", "", "äöü"]
    w = BitWriter()
    w.u(1, 1)
    with pytest.raises(ConfigError):
        w.st("x")
    r = BitReader(b"\x80a\0")
    r.u(1)
    with pytest.raises(NonConformingBitstreamError):
        r.st()


def test_st_errors() -> None:
    with pytest.raises(TruncatedBitstreamError):
        BitReader(b"abc").st()
    with pytest.raises(TruncatedBitstreamError):   # the NUL is beyond `end`
        BitReader(b"abc\0", 0, 3).st()
    with pytest.raises(NonConformingBitstreamError):
        BitReader(b"\xff\xfe\0").st()
    with pytest.raises(ConfigError):
        BitWriter().st("a\0b")


def test_byte_alignment() -> None:
    w = BitWriter()
    w.byte_alignment()
    assert w.getvalue() == b"\x80"       # always at least one bit
    w = BitWriter()
    w.u(3, 0)
    w.byte_alignment()
    assert w.getvalue() == b"\x10"
    r = BitReader(b"\x10")
    r.u(3)
    r.byte_alignment()
    assert r.is_byte_aligned and r.bits_left == 0
    r = BitReader(b"\x00")
    with pytest.raises(NonConformingBitstreamError):
        r.byte_alignment()
    r = BitReader(b"\x11")
    r.u(3)
    with pytest.raises(NonConformingBitstreamError):
        r.byte_alignment()


def test_reads_are_bounded_by_end() -> None:
    data = b"\xff\xff\xff\xff"
    r = BitReader(data, 1, 3)
    assert r.u(16) == 0xFFFF
    with pytest.raises(TruncatedBitstreamError) as exc:
        r.u(1)
    assert exc.value.offset == 3
    r = BitReader(b"\x00\x00", 0, 2)
    with pytest.raises(TruncatedBitstreamError):
        r.ue(0)
    r = BitReader(b"\x01", 0, 1)
    with pytest.raises(TruncatedBitstreamError):
        r.ue(3)                  # prefix fits, suffix does not
    with pytest.raises(TruncatedBitstreamError):
        BitReader(b"\x00\x00\x00", 0, 3).flt()
    with pytest.raises(TruncatedBitstreamError):
        BitReader(b"ab").bytes(3)


def test_exp_golomb_prefix_limit() -> None:
    assert BitReader(b"\x00" * 4 + b"\x80" + b"\x00" * 5).ue(0) == (1 << 32) - 1
    with pytest.raises(NonConformingBitstreamError):
        BitReader(b"\x00" * 4 + b"\x40" + b"\x00" * 8).ue(0)   # 33 zeros
    with pytest.raises(NonConformingBitstreamError):
        BitReader(b"\x00" * 1000).ue(7)
    w = BitWriter()
    w.ue(0, (1 << 33) - 2)    # needs exactly 32 zero bits
    with pytest.raises(ConfigError):
        w.ue(0, (1 << 33) - 1)


@pytest.mark.parametrize("call", [
    lambda w: w.u(3, 8), lambda w: w.u(3, -1), lambda w: w.i(4, 8), lambda w: w.i(4, -9),
    lambda w: w.ue(2, -1), lambda w: w.u(8, 1.5), lambda w: w.flt(1e40), lambda w: w.flt("x"),
    lambda w: w.st(b"bytes"),
])
def test_writer_rejects_values(call) -> None:
    with pytest.raises(ConfigError):
        call(BitWriter())


def test_writer_bytes_need_alignment() -> None:
    w = BitWriter()
    w.u(1, 0)
    with pytest.raises(ConfigError):
        w.bytes(b"x")


def test_positions() -> None:
    r = BitReader(b"\x00\x01\x02\x03", 1)
    assert (r.start, r.end, r.bit_position, r.byte_position, r.bits_left) == (1, 4, 8, 1, 24)
    r.u(3)
    assert (r.bits_read, r.bytes_left, r.is_byte_aligned) == (3, 2, False)
    assert BitReader(memoryview(b"\x05")).u(8) == 5


def test_random_round_trip() -> None:
    rng = random.Random(1234)
    ops = []
    w = BitWriter()
    for _ in range(3000):
        kind = rng.choice("uiUEf")
        if kind == "u":
            n = rng.randint(1, 40)
            v = rng.randrange(1 << n)
            w.u(n, v)
        elif kind == "i":
            n = rng.randint(1, 40)
            v = rng.randrange(-(1 << (n - 1)), 1 << (n - 1))
            w.i(n, v)
        elif kind == "U":
            n = rng.randint(0, 11)
            v = rng.randrange(1 << rng.randint(0, 30))
            w.ue(n, v)
        elif kind == "E":
            n = rng.randint(0, 11)
            v = rng.randrange(-(1 << 20), 1 << 20)
            w.ie(n, v)
        else:
            n = 32
            v = struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0]
            w.flt(v)
        ops.append((kind, n, v))
    r = BitReader(w.getvalue())
    for kind, n, v in ops:
        got = {"u": r.u, "i": r.i, "U": r.ue, "E": r.ie}[kind](n) if kind != "f" else r.flt()
        assert got == v
