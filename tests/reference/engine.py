"""The binary arithmetic coding engine of DeepCABAC, written in the textbook (H.265 clause 9.3.4)
form: a 9-bit range, a 10-bit ``low`` with outstanding bits on the encoder side and a 9-bit
``offset`` read one bit at a time on the decoder side.

NNCodec implements the same engine in VTM style (``BinEncoder.cpp`` / ``BinDecoder.cpp``: a 32-bit
``low`` with byte-wise carry propagation and a 16-bit decoder ``value`` register); both produce the
same bytes. The only DeepCABAC additions are :meth:`entry_point_start` (``range = 256``, nothing
else) and the bit-position counter ``shifts``, which equals NNCodec's ``totalBitOffset`` (``P``).
"""
from __future__ import annotations

from .contexts import ContextModel


class Encoder:
    def __init__(self) -> None:
        self.low = 0
        self.range = 510
        self.outstanding = 0
        self.first_bit = True
        self.bits: list[int] = []
        self.shifts = 0  # renormalization + bypass shifts so far (= decoder bit position P)

    # -- output ---------------------------------------------------------------------------------
    def _put_bit(self, b: int) -> None:
        if self.first_bit:
            self.first_bit = False
        else:
            self.bits.append(b)
        while self.outstanding:
            self.bits.append(1 - b)
            self.outstanding -= 1

    def _renorm(self) -> None:
        while self.range < 256:
            if self.low < 256:
                self._put_bit(0)
            elif self.low >= 512:
                self.low -= 512
                self._put_bit(1)
            else:
                self.low -= 256
                self.outstanding += 1
            self.range <<= 1
            self.low <<= 1
            self.shifts += 1

    # -- bins -----------------------------------------------------------------------------------
    def encode_bin(self, ctx: ContextModel, bin_: int) -> None:
        lps = ctx.lps_range(self.range)
        self.range -= lps
        if bin_ != ctx.mps:
            self.low += self.range
            self.range = lps
        ctx.update(bin_)
        self._renorm()

    def encode_bypass(self, bin_: int) -> None:
        self.low <<= 1
        if bin_:
            self.low += self.range
        self.shifts += 1
        if self.low >= 1024:
            self._put_bit(1)
            self.low -= 1024
        elif self.low < 512:
            self._put_bit(0)
        else:
            self.low -= 512
            self.outstanding += 1

    def encode_bypass_bits(self, value: int, n: int) -> None:
        """``uae(n)``: n bypass bins, most significant first (``value`` taken modulo 2^n)."""
        for i in range(n - 1, -1, -1):
            self.encode_bypass((value >> i) & 1)

    def encode_terminate(self, bin_: int) -> None:
        self.range -= 2
        if bin_:
            self.low += self.range
            self._flush()
        else:
            self._renorm()

    def entry_point_start(self) -> None:
        self.range = 256

    def _flush(self) -> None:
        self.range = 2
        self._renorm()
        self._put_bit((self.low >> 9) & 1)
        b = ((self.low >> 7) & 3) | 1  # its last bit is the stop bit
        self.bits += [b >> 1, b & 1]

    def finish(self) -> bytes:
        """Terminating bin 1, flush with the stop bit, zero padding to a byte boundary."""
        self.encode_terminate(1)
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


class Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0  # bits read
        self.range = 510
        self.offset = self._read(9)

    @property
    def shifts(self) -> int:
        """Bit position P: shifts of the offset register since initialisation."""
        return self.pos - 9

    def bytes_consumed(self) -> int:
        return (self.pos + 7) // 8

    def _read(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("CABAC payload truncated")
            v = (v << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def decode_bin(self, ctx: ContextModel) -> int:
        lps = ctx.lps_range(self.range)
        self.range -= lps
        if self.offset >= self.range:
            bin_ = 1 - ctx.mps
            self.offset -= self.range
            self.range = lps
        else:
            bin_ = ctx.mps
        ctx.update(bin_)
        while self.range < 256:
            self.range <<= 1
            self.offset = (self.offset << 1) | self._read(1)
        return bin_

    def decode_bypass(self) -> int:
        self.offset = (self.offset << 1) | self._read(1)
        if self.offset >= self.range:
            self.offset -= self.range
            return 1
        return 0

    def decode_bypass_bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.decode_bypass()
        return v

    def decode_terminate(self) -> int:
        self.range -= 2
        if self.offset >= self.range:
            return 1
        if self.range < 256:
            self.range <<= 1
            self.offset = (self.offset << 1) | self._read(1)
        return 0

    def entry_point_start(self) -> None:
        self.range = 256
        if self.offset >= 256:
            raise ValueError("arithmetic decoder offset >= 256 at an entry point")
