"""Aggregate unit (``NNR_AGG``): our reading, NNCodec has none (it raises NotImplementedError).

Header: ``num_of_nnr_units_minus2 u(8)``. Payload: ``num_of_nnr_units_minus2 + 2`` complete
nested ``nnr_unit()`` s, each with its own ``nnr_unit_size``. This module only frames the nested
units (their raw bytes); :func:`nnr.bitstream.stream.parse_stream` parses them into
``ParsedUnit.children``. Nested aggregate units are not allowed. The standard's aggregate header
may carry more fields than this; no stream we know of uses AGG.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.errors import ConfigError, NonConformingBitstreamError, TruncatedBitstreamError

if TYPE_CHECKING:
    from nnr.bitstream.stream import StreamContext

__all__ = ["AggregateUnitHeader", "AggregatePayload", "read_unit_size"]


def read_unit_size(r: BitReader) -> tuple[int, int]:
    """Read ``nnr_unit_size_flag`` and ``nnr_unit_size``; return ``(size, size_flag)``."""
    flag = r.u(1)
    return r.u(15 + 16 * flag), flag


def _check_framing(unit: bytes) -> None:
    try:
        size, _ = read_unit_size(BitReader(unit))
    except TruncatedBitstreamError:
        size = -1
    if size != len(unit):
        raise ConfigError("a nested unit's nnr_unit_size does not match its length")


@dataclass
class AggregateUnitHeader:
    """``nnr_aggregate_unit_header()`` (our reading)."""

    num_of_nnr_units_minus2: int = 0

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None) -> "AggregateUnitHeader":
        return cls(num_of_nnr_units_minus2=r.u(8))

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None) -> None:
        w.u(8, self.num_of_nnr_units_minus2)


@dataclass
class AggregatePayload:
    """``nnr_aggregate_unit_payload()``: the raw bytes of each nested NNR unit."""

    nnr_units: list[bytes] = field(default_factory=list)

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None,
             header: AggregateUnitHeader | None = None) -> "AggregatePayload":
        count = (header.num_of_nnr_units_minus2 if header is not None else 0) + 2
        units = []
        for _ in range(count):
            start = r.byte_position
            size, flag = read_unit_size(r)
            field_bytes = 2 + 2 * flag
            if size < field_bytes + 1:
                raise NonConformingBitstreamError(
                    f"nested nnr_unit_size {size} is smaller than its header", offset=start)
            rest = r.bytes(size - field_bytes)
            units.append(bytes(r.data[start:start + field_bytes]) + rest)
        return cls(nnr_units=units)

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None,
              header: AggregateUnitHeader | None = None) -> None:
        count = (header.num_of_nnr_units_minus2 if header is not None else 0) + 2
        if len(self.nnr_units) != count:
            raise ConfigError(f"aggregate unit holds {len(self.nnr_units)} units, header says "
                              f"{count}")
        for unit in self.nnr_units:
            _check_framing(unit)
            w.bytes(unit)

    @staticmethod
    def header_for(units: Sequence[bytes]) -> AggregateUnitHeader:
        """The header matching ``units`` (at least 2)."""
        if not 2 <= len(units) <= 257:
            raise ConfigError("an aggregate unit holds 2..257 units")
        return AggregateUnitHeader(num_of_nnr_units_minus2=len(units) - 2)
