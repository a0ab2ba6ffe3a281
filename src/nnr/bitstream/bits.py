"""Bit-level reading and writing with the NNR descriptors (notes §4.1).

Bits are MSB first. :class:`BitReader` never reads past its ``end``: every overrun raises
:class:`~nnr.errors.TruncatedBitstreamError` naming the byte offset. :class:`BitWriter` mirrors
every read method (``u(n)`` / ``u(n, x)`` ...) and raises :class:`~nnr.errors.ConfigError` on
values its descriptor cannot hold.
"""
from __future__ import annotations

import operator
import struct

from nnr.errors import ConfigError, NonConformingBitstreamError, TruncatedBitstreamError

__all__ = ["BitReader", "BitWriter", "MAX_EXP_GOLOMB_PREFIX"]

#: Longest accepted Exp-Golomb prefix (number of leading zero bits).
MAX_EXP_GOLOMB_PREFIX = 32

BytesLike = bytes | bytearray | memoryview


class BitReader:
    """MSB-first reader over ``data[start:end]`` (byte offsets into ``data``)."""

    def __init__(self, data: BytesLike, start: int = 0, end: int | None = None) -> None:
        if isinstance(data, memoryview):
            data = data.tobytes()
        self._data = data
        if end is None:
            end = len(data)
        if not 0 <= start <= end <= len(data):
            raise ValueError(f"bad reader range [{start}, {end}) for {len(data)} bytes")
        self._start = start
        self._end = end
        self._pos = start * 8          # absolute bit position in data
        self._end_bit = end * 8

    # --- positions -----------------------------------------------------------------------
    @property
    def data(self) -> bytes | bytearray:
        """The underlying buffer (offsets are relative to it)."""
        return self._data

    @property
    def start(self) -> int:
        return self._start

    @property
    def end(self) -> int:
        return self._end

    @property
    def bit_position(self) -> int:
        """Absolute bit position in ``data``."""
        return self._pos

    @property
    def byte_position(self) -> int:
        """Byte offset in ``data`` of the byte holding the next bit."""
        return self._pos >> 3

    @property
    def bits_read(self) -> int:
        """Bits consumed since ``start``."""
        return self._pos - self._start * 8

    @property
    def bits_left(self) -> int:
        return self._end_bit - self._pos

    @property
    def bytes_left(self) -> int:
        """Whole bytes left after the current (possibly partial) byte is completed."""
        return self._end - ((self._pos + 7) >> 3)

    @property
    def is_byte_aligned(self) -> bool:
        return self._pos & 7 == 0

    # --- errors --------------------------------------------------------------------------
    def ensure(self, nbits: int, what: str) -> None:
        """Raise TruncatedBitstreamError unless ``nbits`` more bits can be read."""
        if nbits > self._end_bit - self._pos:
            raise TruncatedBitstreamError(
                f"{what} needs {nbits} bits but only {self._end_bit - self._pos} are left",
                offset=self._pos >> 3)

    def _require_aligned(self, what: str) -> None:
        if self._pos & 7:
            raise NonConformingBitstreamError(f"{what} is not byte aligned",
                                              offset=self._pos >> 3)

    # --- descriptors ---------------------------------------------------------------------
    def u(self, n: int) -> int:
        """Unsigned ``n``-bit integer."""
        if n <= 0:
            if n == 0:
                return 0
            raise ValueError("negative bit count")
        self.ensure(n, f"u({n})")
        pos = self._pos
        stop = pos + n
        first, last = pos >> 3, (stop + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        self._pos = stop
        return (chunk >> (last * 8 - stop)) & ((1 << n) - 1)

    def i(self, n: int) -> int:
        """``n``-bit two's complement integer."""
        val = self.u(n)
        return val - (1 << n) if val >> (n - 1) else val

    def ue(self, k: int) -> int:
        """k-th order Exp-Golomb code."""
        start = self._pos
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > MAX_EXP_GOLOMB_PREFIX:
                raise NonConformingBitstreamError(
                    f"ue({k}) prefix longer than {MAX_EXP_GOLOMB_PREFIX} zero bits",
                    offset=start >> 3)
        return (((1 << zeros) - 1) << k) + self.u(k + zeros)

    def ie(self, k: int) -> int:
        """Signed k-th order Exp-Golomb code (0, 1, -1, 2, -2 ... map to 0, 1, 2, 3, 4 ...)."""
        x = self.ue(k)
        return (x + 1) >> 1 if x & 1 else -(x >> 1)

    def st(self) -> str:
        """UTF-8 string terminated by a NUL byte; must start byte aligned."""
        self._require_aligned("st(v)")
        first = self._pos >> 3
        nul = self._data.find(b"\0", first, self._end)
        if nul < 0:
            raise TruncatedBitstreamError("st(v) has no terminating NUL before the end",
                                          offset=first)
        raw = bytes(self._data[first:nul])
        self._pos = (nul + 1) * 8
        try:
            return raw.decode("utf-8", "strict")
        except UnicodeDecodeError as exc:
            raise NonConformingBitstreamError(f"st(v) is not valid UTF-8: {exc}",
                                              offset=first) from None

    def flt(self) -> float:
        """IEEE float32 as 4 x u(8), least significant byte first."""
        self.ensure(32, "flt(32)")
        raw = bytes(self.u(8) for _ in range(4))
        return struct.unpack("<f", raw)[0]

    def byte_alignment(self) -> None:
        """Read ``byte_alignment()``: a 1 bit, then 0 bits up to the byte boundary."""
        where = self._pos >> 3
        if self.u(1) != 1:
            raise NonConformingBitstreamError("byte_alignment() does not start with a 1 bit",
                                              offset=where)
        pad = -self._pos & 7
        if self.u(pad) != 0:
            raise NonConformingBitstreamError("byte_alignment() has non-zero padding bits",
                                              offset=where)

    def bytes(self, n: int) -> bytes:
        """``n`` raw bytes; must be byte aligned."""
        self._require_aligned("byte string")
        if n < 0:
            raise ValueError("negative byte count")
        self.ensure(8 * n, f"{n} bytes")
        first = self._pos >> 3
        self._pos += 8 * n
        return bytes(self._data[first:first + n])

    def skip_to_end(self) -> bytes:
        """All remaining bytes up to ``end``; must be byte aligned."""
        return self.bytes(self.bytes_left)


def _as_int(x: object, what: str) -> int:
    try:
        return operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{what} needs an integer, got {x!r}") from None


class BitWriter:
    """MSB-first writer; each method mirrors the :class:`BitReader` method of the same name."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._acc = 0      # pending bits (fewer than 8)
        self._nbits = 0

    @property
    def bit_position(self) -> int:
        """Bits written so far."""
        return len(self._buf) * 8 + self._nbits

    @property
    def is_byte_aligned(self) -> bool:
        return self._nbits == 0

    def getvalue(self) -> bytes:
        """The bytes written; a partial last byte is padded with 0 bits."""
        if self._nbits:
            return bytes(self._buf) + bytes([self._acc << (8 - self._nbits)])
        return bytes(self._buf)

    def _put(self, n: int, x: int) -> None:
        acc = (self._acc << n) | x
        nb = self._nbits + n
        full, rem = divmod(nb, 8)
        if full:
            self._buf += (acc >> rem).to_bytes(full, "big")
        self._acc = acc & ((1 << rem) - 1)
        self._nbits = rem

    def u(self, n: int, x: int) -> None:
        """Unsigned ``n``-bit integer."""
        x = _as_int(x, f"u({n})")
        if n < 0 or not 0 <= x < (1 << n):
            raise ConfigError(f"value {x} does not fit u({n})")
        if n:
            self._put(n, x)

    def i(self, n: int, x: int) -> None:
        """``n``-bit two's complement integer."""
        x = _as_int(x, f"i({n})")
        if n <= 0 or not -(1 << (n - 1)) <= x < (1 << (n - 1)):
            raise ConfigError(f"value {x} does not fit i({n})")
        self._put(n, x & ((1 << n) - 1))

    def ue(self, k: int, x: int) -> None:
        """k-th order Exp-Golomb code."""
        x = _as_int(x, f"ue({k})")
        if x < 0:
            raise ConfigError(f"ue({k}) cannot code the negative value {x}")
        zeros = 0
        while x >= (1 << k):
            x -= 1 << k
            k += 1
            zeros += 1
            if zeros > MAX_EXP_GOLOMB_PREFIX:
                raise ConfigError(f"value too large for ue() with a prefix of at most "
                                  f"{MAX_EXP_GOLOMB_PREFIX} zero bits")
        self._put(zeros + 1, 1)
        if k:
            self._put(k, x)

    def ie(self, k: int, x: int) -> None:
        """Signed k-th order Exp-Golomb code."""
        x = _as_int(x, f"ie({k})")
        self.ue(k, -2 * x if x <= 0 else 2 * x - 1)

    def st(self, s: str) -> None:
        """UTF-8 string plus a NUL byte; must be byte aligned."""
        if not isinstance(s, str):
            raise ConfigError(f"st(v) needs a str, got {type(s).__name__}")
        if self._nbits:
            raise ConfigError("st(v) must start byte aligned")
        try:
            raw = s.encode("utf-8", "strict")
        except UnicodeEncodeError as exc:   # lone surrogates
            raise ConfigError(f"st(v) cannot hold {s!r}: {exc.reason}") from None
        if b"\0" in raw:
            raise ConfigError("st(v) cannot hold a NUL character")
        self._buf += raw + b"\0"

    def flt(self, x: float) -> None:
        """IEEE float32 as 4 x u(8), least significant byte first."""
        try:
            fx = float(x)
            raw = struct.pack("<f", fx)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"flt(32) cannot hold {x!r}") from None
        for b in raw:
            self._put(8, b)

    def byte_alignment(self) -> None:
        """A 1 bit, then 0 bits to the byte boundary (always at least one bit)."""
        self._put(1, 1)
        if self._nbits:
            self._put(8 - self._nbits, 0)

    def bytes(self, b: BytesLike) -> None:
        """Raw bytes; must be byte aligned."""
        if self._nbits:
            raise ConfigError("raw bytes must start byte aligned")
        self._buf += bytes(b)
