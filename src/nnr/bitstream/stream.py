"""NNR unit framing and the unit-type dispatch (notes §4.2, §4.3).

A bitstream is a plain concatenation of ``nnr_unit()`` s::

    nnr_unit_size_flag u(1), nnr_unit_size u(15 + 16*flag)   (counts the whole unit)
    nnr_unit_type u(6), independently_decodable_flag u(1),
    partial_data_counter_present_flag u(1), [partial_data_counter u(8)]
    type-specific header, payload

:func:`parse_stream` parses every unit's header and, except for NDUs, its payload; for NDUs it
gives the byte range of the CABAC / raw payload. :func:`write_unit` is the mirror.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, BinaryIO, Iterator

import numpy as np

from nnr.bitstream.bits import BitReader, BitWriter, BytesLike
from nnr.bitstream.enums import CompressedParameterTypes, NnrUnitType, PayloadType, unit_type_name
from nnr.bitstream.units.aggregate import AggregatePayload, AggregateUnitHeader, read_unit_size
from nnr.bitstream.units.compressed_data import CompressedDataUnitHeader, DimsHint
from nnr.bitstream.units.layer_parameter_set import LayerParameterSet, LayerParameterSetHeader
from nnr.bitstream.units.model_parameter_set import ModelParameterSet
from nnr.bitstream.units.quantization import QuantizationPayload, QuantizationUnitHeader
from nnr.bitstream.units.start import StartUnitHeader
from nnr.bitstream.units.topology import TopologyPayload, TopologyUnitHeader
from nnr.errors import (
    BitstreamError,
    ConfigError,
    NonConformingBitstreamError,
    TruncatedBitstreamError,
    UnsupportedFeatureError,
)
from nnr.limits import check_dims, check_ndu, ndu_tensors

__all__ = [
    "StreamContext",
    "ParsedUnit",
    "UNIT_SYNTAX",
    "parse_stream",
    "iter_units",
    "iter_file_units",
    "write_unit",
    "frame_unit",
    "StreamWriter",
    "raw_float_payload",
    "raw_float_tensor",
    "SHORT_SIZE_LIMIT",
]

#: A unit whose length counted with a 2-byte size field is below this uses the 2-byte form.
SHORT_SIZE_LIMIT = 1 << 15
_LONG_SIZE_LIMIT = 1 << 31


@dataclass
class StreamContext:
    """What later units need from earlier ones."""

    general_profile_idc: int = 0
    mps_topology_indexed_reference_flag: int = 0
    mps_parent_signalling_enabled_flag: int = 0
    mps: ModelParameterSet | None = None
    lps: LayerParameterSet | None = None
    #: Out-of-band tensor dimensions for NDUs without ``tensor_dimensions`` (see DimsHint).
    dims_hint: DimsHint = None
    #: A non-BLOCK DC NDU holding G was the last DC NDU (the next one holds H).
    dc_g_pending: bool = False
    #: The decoder's nnr.DecodeLimits, enforced by the NDU parser (None: the defaults).
    limits: Any = None
    #: Elements declared so far in tensors coded almost for free (see nnr.limits).
    sparse_elements: int = 0

    def update(self, unit_type: int, header: Any, payload: Any) -> None:
        """Take in a unit that was just read or written."""
        if unit_type == NnrUnitType.STR:
            self.general_profile_idc = header.general_profile_idc
        elif unit_type == NnrUnitType.MPS:
            self.mps = payload
            self.lps = None
            self.mps_topology_indexed_reference_flag = payload.mps_topology_indexed_reference_flag
            self.mps_parent_signalling_enabled_flag = (
                payload.mps_parent_signalling_enabled_flag if self.general_profile_idc == 1
                else 0)
        elif unit_type == NnrUnitType.LPS:
            self.lps = payload
        elif unit_type == NnrUnitType.NDU:
            if (header.compressed_parameter_types & CompressedParameterTypes.DC
                    and header.nnr_compressed_data_unit_payload_type != PayloadType.BLOCK):
                self.dc_g_pending = header.decomposed_type(self) == "G"


#: unit type -> (type-specific header class or None, payload class or None).
UNIT_SYNTAX: dict[NnrUnitType, tuple[type | None, type | None]] = {
    NnrUnitType.STR: (StartUnitHeader, None),
    NnrUnitType.MPS: (None, ModelParameterSet),
    NnrUnitType.LPS: (LayerParameterSetHeader, LayerParameterSet),
    NnrUnitType.TPL: (TopologyUnitHeader, TopologyPayload),
    NnrUnitType.QNT: (QuantizationUnitHeader, QuantizationPayload),
    NnrUnitType.NDU: (CompressedDataUnitHeader, None),   # payload: byte range
    NnrUnitType.AGG: (AggregateUnitHeader, AggregatePayload),
}


@dataclass
class ParsedUnit:
    """One parsed NNR unit. Offsets are absolute byte offsets in the parsed data."""

    index: int
    offset: int
    size: int
    size_flag: int
    unit_type: int
    independently_decodable_flag: int
    partial_data_counter: int | None
    header: Any = None
    payload: Any = None
    header_end: int = 0                    # byte offset after the type-specific header
    payload_start: int | None = None       # NDU only
    payload_end: int | None = None         # NDU only
    dims: list[int] | None = None          # NDU: tensor dimensions (coded or out of band)
    #: Non-BLOCK NDU with decomposition: "G" or "H", as the header was read (entry points).
    decomposed_type: str | None = None
    children: list["ParsedUnit"] = field(default_factory=list)   # AGG only

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def type_name(self) -> str:
        return unit_type_name(self.unit_type)

    def unit_bytes(self, data: BytesLike) -> bytes:
        return bytes(data[self.offset:self.end])

    def payload_bytes(self, data: BytesLike) -> bytes:
        """The NDU payload (CABAC stream or raw floats)."""
        if self.payload_start is None:
            raise ValueError(f"{self.type_name} has no raw payload")
        return bytes(data[self.payload_start:self.payload_end])


class _Parser:
    """Walks units, keeps the stream context and the unit-order rules."""

    def __init__(self, data: BytesLike, ctx: StreamContext) -> None:
        self.data = data.tobytes() if isinstance(data, memoryview) else data
        self.ctx = ctx
        self.index = 0
        self.mps_pending = False   # an MPS was seen and no NDU since
        self.mps_seen = False

    def units(self, start: int, end: int, nested: bool = False) -> Iterator[ParsedUnit]:
        pos = start
        while pos < end:
            unit = self.unit(pos, end, nested)
            pos = unit.end
            yield unit

    def unit(self, offset: int, limit: int, nested: bool) -> ParsedUnit:
        index, name = self.index, None
        self.index += 1
        try:
            r = BitReader(self.data, offset, limit)
            size, flag = read_unit_size(r)
            field_bytes = 2 + 2 * flag
            if size < field_bytes + 1:
                raise NonConformingBitstreamError(
                    f"nnr_unit_size {size} is smaller than the unit header")
            if offset + size > limit:
                raise TruncatedBitstreamError(
                    f"unit of {size} bytes runs past the end of the data "
                    f"({limit - offset} bytes left)")
            r = BitReader(self.data, offset + field_bytes, offset + size)
            unit_type = r.u(6)
            name = unit_type_name(unit_type)
            unit = ParsedUnit(index, offset, size, flag, unit_type, r.u(1), None)
            if r.u(1):
                unit.partial_data_counter = r.u(8)
            self._check_order(index, unit_type, nested)
            self._parse_body(r, unit)
            self.ctx.update(unit_type, unit.header, unit.payload)
            return unit
        except TruncatedBitstreamError as exc:
            if name is not None:   # the unit is complete: its content overruns its size
                raise NonConformingBitstreamError(
                    f"{exc.reason}: the unit content runs past nnr_unit_size",
                    unit_index=exc.unit_index if exc.unit_index is not None else index,
                    unit_type=exc.unit_type or name, offset=exc.offset) from exc
            raise exc.located(unit_index=index, offset=offset) from exc
        except BitstreamError as exc:
            raise exc.located(unit_index=index, unit_type=name, offset=offset) from exc
        except UnsupportedFeatureError as exc:
            raise UnsupportedFeatureError(f"{exc} (unit {index}, {name}, byte {offset})") from exc

    def _check_order(self, index: int, unit_type: int, nested: bool) -> None:
        if unit_type not in UNIT_SYNTAX:
            raise NonConformingBitstreamError(f"reserved nnr_unit_type {unit_type}")
        if index == 0 and unit_type != NnrUnitType.STR:
            raise NonConformingBitstreamError("the first unit is not NNR_STR")
        if unit_type == NnrUnitType.STR and index != 0:
            raise NonConformingBitstreamError("NNR_STR after the first unit")
        if unit_type == NnrUnitType.AGG and nested:
            raise NonConformingBitstreamError("NNR_AGG inside NNR_AGG")
        if unit_type == NnrUnitType.MPS:
            if self.mps_pending:
                raise NonConformingBitstreamError("more than one NNR_MPS before an NDU")
            self.mps_pending = self.mps_seen = True
        if unit_type == NnrUnitType.NDU:
            if not self.mps_seen:
                raise NonConformingBitstreamError("NNR_NDU before any NNR_MPS")
            self.mps_pending = False

    def _parse_body(self, r: BitReader, unit: ParsedUnit) -> None:
        header_cls, payload_cls = UNIT_SYNTAX[NnrUnitType(unit.unit_type)]
        if unit.unit_type == NnrUnitType.NDU:
            self._parse_ndu(r, unit)
            return
        if header_cls is not None:
            unit.header = header_cls.read(r, self.ctx)
            if unit.unit_type == NnrUnitType.STR and unit.header.general_profile_idc not in (0, 1):
                raise UnsupportedFeatureError(
                    f"general_profile_idc {unit.header.general_profile_idc} is not supported")
        unit.header_end = r.byte_position
        if payload_cls is not None:
            unit.payload = payload_cls.read(r, self.ctx, unit.header)
        if r.bits_left:
            raise NonConformingBitstreamError(
                f"{unit_type_name(unit.unit_type)} payload ends {r.bits_left // 8} bytes "
                f"before the end of the unit", offset=r.byte_position)
        if unit.unit_type == NnrUnitType.AGG:
            start = unit.header_end
            unit.children = list(self.units(start, unit.end, nested=True))

    def _parse_ndu(self, r: BitReader, unit: ParsedUnit) -> None:
        hdr = CompressedDataUnitHeader.read(r, self.ctx, self.ctx.dims_hint)
        unit.header = hdr
        unit.header_end = unit.payload_start = r.byte_position
        unit.payload_end = unit.end
        unit.dims = hdr.resolved_dimensions(self.ctx.dims_hint)
        if (hdr.compressed_parameter_types & CompressedParameterTypes.DC
                and hdr.nnr_compressed_data_unit_payload_type != PayloadType.BLOCK):
            unit.decomposed_type = hdr.decomposed_type(self.ctx)   # before ctx.update()
        check_dims(unit.dims)
        if hdr.nnr_compressed_data_unit_payload_type == PayloadType.RAW_FLOAT:
            need = 4 * prod(unit.dims)
            if unit.payload_end - unit.payload_start != need:
                raise NonConformingBitstreamError(
                    f"RAW_FLOAT payload has {unit.payload_end - unit.payload_start} bytes, "
                    f"the dimensions {unit.dims} need {need}", offset=unit.payload_start)
        elif hdr.uses_cabac:
            # before anything is allocated: can the payload code what the header declares?
            tensors = ndu_tensors(hdr, unit.dims, self.ctx.general_profile_idc)
            self.ctx.sparse_elements = check_ndu(tensors, unit.payload_end - unit.payload_start,
                                                 self.ctx.limits, self.ctx.sparse_elements)


def iter_units(data: BytesLike, ctx: StreamContext | None = None) -> Iterator[ParsedUnit]:
    """Parse units one by one (see :func:`parse_stream`)."""
    if len(data) == 0:
        raise TruncatedBitstreamError("empty bitstream", offset=0)
    parser = _Parser(data, ctx if ctx is not None else StreamContext())
    yield from parser.units(0, len(parser.data))


def iter_file_units(f: BinaryIO, ctx: StreamContext | None = None
                    ) -> Iterator[tuple[ParsedUnit, bytes, int]]:
    """Parse units read one at a time from a binary file object, so that only one unit is in
    memory. Yields ``(unit, unit_bytes, file_offset)``; the unit's offsets are relative to
    ``unit_bytes``; errors carry the file offset."""
    parser = _Parser(b"", ctx if ctx is not None else StreamContext())
    pos = 0
    while True:
        head = f.read(2)
        if not head:
            if pos == 0:
                raise TruncatedBitstreamError("empty bitstream", offset=0)
            return
        if len(head) < 2:
            raise TruncatedBitstreamError("the stream ends inside a unit size field",
                                          unit_index=parser.index, offset=pos)
        if head[0] & 0x80:
            more = f.read(2)
            if len(more) < 2:
                raise TruncatedBitstreamError("the stream ends inside a unit size field",
                                              unit_index=parser.index, offset=pos)
            head += more
            size = int.from_bytes(head, "big") & 0x7FFFFFFF
        else:
            size = int.from_bytes(head, "big")
        rest = f.read(max(0, size - len(head)))
        data = head + rest
        parser.data = data
        try:
            unit = parser.unit(0, len(data), False)
        except BitstreamError as exc:
            raise type(exc)(exc.reason, unit_index=exc.unit_index, unit_type=exc.unit_type,
                            offset=pos + (exc.offset or 0)) from exc
        yield unit, data, pos
        pos += len(data)


def parse_stream(data: BytesLike, ctx: StreamContext | None = None,
                 dims_hint: DimsHint = None) -> list[ParsedUnit]:
    """Parse all units of ``data``. ``ctx`` (a fresh one by default) is updated in place."""
    if ctx is None:
        ctx = StreamContext()
    if dims_hint is not None:
        ctx.dims_hint = dims_hint
    return list(iter_units(data, ctx))


# --- writing --------------------------------------------------------------------------------
def frame_unit(body: BytesLike, size_flag: int | None = None) -> bytes:
    """Prefix ``body`` (unit header + payload) with ``nnr_unit_size``.

    By default the 2-byte form is used when the unit with a 2-byte field is < 32768 bytes,
    else the 4-byte form (as NNCodec does).
    """
    n = len(body)
    if size_flag is None:
        size_flag = 0 if n + 2 < SHORT_SIZE_LIMIT else 1
    total = n + 2 + 2 * size_flag
    if total >= (SHORT_SIZE_LIMIT if size_flag == 0 else _LONG_SIZE_LIMIT):
        raise ConfigError(f"unit of {total} bytes does not fit nnr_unit_size "
                          f"(size flag {size_flag})")
    w = BitWriter()
    w.u(1, size_flag)
    w.u(15 + 16 * size_flag, total)
    return w.getvalue() + bytes(body)


def write_unit(unit_type: int, header: Any = None, payload: Any = None, *,
               ctx: StreamContext | None = None, independently_decodable_flag: int = 1,
               partial_data_counter: int | None = None, size_flag: int | None = None,
               dims_hint: DimsHint = None, decomposed_tensor_type: str | None = None) -> bytes:
    """Write one complete NNR unit.

    ``header`` is the type-specific header dataclass (``None`` for MPS). ``payload`` is the
    payload dataclass for MPS / LPS / TPL / QNT / AGG, or the raw payload bytes of an NDU
    (CABAC stream or raw floats). ``ctx`` supplies the profile and MPS flags (not updated).
    """
    try:
        syntax = UNIT_SYNTAX[NnrUnitType(unit_type)]
    except ValueError:
        raise ConfigError(f"reserved nnr_unit_type {unit_type}") from None
    header_cls, payload_cls = syntax
    ctx = ctx if ctx is not None else StreamContext()
    w = BitWriter()
    w.u(6, unit_type)
    w.u(1, independently_decodable_flag)
    w.u(1, int(partial_data_counter is not None))
    if partial_data_counter is not None:
        w.u(8, partial_data_counter)
    _check_instance("header", header, header_cls)
    if unit_type == NnrUnitType.NDU:
        header.write(w, ctx, dims_hint if dims_hint is not None else ctx.dims_hint,
                     decomposed_tensor_type)
        w.bytes(b"" if payload is None else payload)
    else:
        if header is not None:
            header.write(w, ctx)
        _check_instance("payload", payload, payload_cls)
        if payload is not None:
            payload.write(w, ctx, header)
    return frame_unit(w.getvalue(), size_flag)


def _check_instance(what: str, value: Any, cls: type | None) -> None:
    if cls is None:
        if value is not None:
            raise ConfigError(f"this unit type has no {what} dataclass")
    elif not isinstance(value, cls):
        raise ConfigError(f"{what} must be a {cls.__name__}, got {type(value).__name__}")


class StreamWriter:
    """Builds a bitstream unit by unit, keeping the :class:`StreamContext` up to date."""

    def __init__(self, ctx: StreamContext | None = None) -> None:
        self.ctx = ctx if ctx is not None else StreamContext()
        self._parts: list[bytes] = []

    def add(self, unit_type: int, header: Any = None, payload: Any = None, **kw: Any) -> bytes:
        """Write a unit (arguments as :func:`write_unit`), append it and return its bytes."""
        unit = write_unit(unit_type, header, payload, ctx=self.ctx, **kw)
        self.ctx.update(unit_type, header, payload)
        self._parts.append(unit)
        return unit

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


# --- RAW_FLOAT payloads -----------------------------------------------------------------------
def raw_float_payload(tensor: np.ndarray) -> bytes:
    """NDU payload of a RAW_FLOAT tensor: little-endian float32, C order."""
    return np.ascontiguousarray(tensor, dtype="<f4").tobytes()


def raw_float_tensor(data: BytesLike, unit: ParsedUnit) -> np.ndarray:
    """Decode a parsed RAW_FLOAT NDU's payload (a float32 array shaped ``unit.dims``)."""
    if unit.unit_type != NnrUnitType.NDU or \
            unit.header.nnr_compressed_data_unit_payload_type != PayloadType.RAW_FLOAT:
        raise ValueError("not a RAW_FLOAT NDU")
    raw = unit.payload_bytes(data)
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(unit.dims)
