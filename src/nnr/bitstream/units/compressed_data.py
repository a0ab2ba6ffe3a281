"""Compressed data unit (``NNR_NDU``) header, notes §4.9-§4.11.

The NDU payload is not parsed here: for INT / FLOAT / BLOCK it is one CABAC stream, for
RAW_FLOAT a little-endian float32 tensor; it runs from the end of the header's
``byte_alignment()`` to the end of the unit (see :mod:`nnr.bitstream.stream`).

Absent fields and what reading leaves in them (NNCodec's decoder behaviour):

- ``cabac_unary_length_minus1``: 9 when not in the stream (NNCodec writes 10);
- ``compressed_parameter_types``: 0 when ``input_parameters_present_flag`` = 0;
- ``dq_flag``, ``scan_order``, ``first_tensor_dimension_shift``: 0;
- everything else that is absent: ``None``.

Entry points are kept as coded: per entry ``cabac_offset``, ``dq_state`` and
``bit_offset_delta``, where delta 0 counts from the tensor's level-data start and delta j > 0
from entry j-1 (NNCodec's ``bit_offset``). On the wire delta 0 is ``ue(11)`` and entry j > 0 is
``ie(7)`` of ``delta[j] - delta[j-1]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.bitstream.enums import CompressedParameterTypes, ParentNodeIdType, PayloadType
from nnr.errors import (
    ConfigError,
    NonConformingBitstreamError,
    UnsupportedFeatureError,
)

if TYPE_CHECKING:
    from nnr.bitstream.stream import StreamContext

__all__ = [
    "IntegerCodebook",
    "CabacEntryPoint",
    "CompressedDataUnitHeader",
    "DimsHint",
    "read_topology_elements_ids_list",
    "write_topology_elements_ids_list",
    "read_entry_point_list",
    "write_entry_point_list",
    "num_block_rows_minus1",
    "MAX_SCAN_ORDER",
    "DEFAULT_CABAC_UNARY_LENGTH_MINUS1",
]

#: Largest ``scan_order`` with a defined block size (64x64); 5..15 are rejected.
MAX_SCAN_ORDER = 4
#: Value NNCodec's decoder assumes when ``cabac_unary_length_minus1`` is not in the stream.
DEFAULT_CABAC_UNARY_LENGTH_MINUS1 = 9

_DC = int(CompressedParameterTypes.DC)
_CABAC_TYPES = (PayloadType.INT, PayloadType.FLOAT, PayloadType.BLOCK)

#: Tensor dimensions given out of band: a sequence, or a callable that receives the header
#: parsed so far (topology ids, node ids, input parameters) and returns the dimensions.
DimsHint = Sequence[int] | Callable[["CompressedDataUnitHeader"], Sequence[int] | None] | None


# --- topology_elements_ids_list -----------------------------------------------------------
def read_topology_elements_ids_list(r: BitReader, indexed: int) -> list[str] | list[int]:
    """``topology_elements_ids_list(indexed)``: names (``st``) or indices (``ue(7)``)."""
    n = r.ue(7) + 2
    r.ensure(8 * n, "topology_elements_ids_list")   # each element takes at least 8 bits
    if indexed:
        idx = [r.ue(7) for _ in range(n)]
        r.byte_alignment()
        return idx
    r.byte_alignment()
    return [r.st() for _ in range(n)]


def write_topology_elements_ids_list(w: BitWriter, indexed: int,
                                     ids: Sequence[str] | Sequence[int]) -> None:
    """Mirror of :func:`read_topology_elements_ids_list`; needs at least 2 elements."""
    if len(ids) < 2:
        raise ConfigError("topology_elements_ids_list needs at least 2 elements")
    w.ue(7, len(ids) - 2)
    if indexed:
        for i in ids:
            w.ue(7, i)  # type: ignore[arg-type]
        w.byte_alignment()
        return
    w.byte_alignment()
    for s in ids:
        w.st(s)  # type: ignore[arg-type]


# --- integer_codebook ---------------------------------------------------------------------
@dataclass
class IntegerCodebook:
    """``integer_codebook()``: strictly increasing integers, ``cb_zero_offset`` = CbZeroOffset."""

    codebook: list[int]
    cb_zero_offset: int
    codebook_egk: int = 0

    @property
    def codebook_size(self) -> int:
        return len(self.codebook)

    @property
    def codebook_center_offset(self) -> int:
        return self.cb_zero_offset - (self.codebook_size >> 1)

    @property
    def codebook_zero_value(self) -> int:
        return self.codebook[self.cb_zero_offset]

    @classmethod
    def read(cls, r: BitReader) -> "IntegerCodebook":
        where = r.byte_position
        egk = r.u(4)
        size = r.ue(2)
        zero = (size >> 1) + r.ie(2)
        if size < 1 or not 0 <= zero < size:
            raise NonConformingBitstreamError(
                f"codebook_size {size} with CbZeroOffset {zero} is invalid", offset=where)
        r.ensure((size - 1) * (egk + 1), "codebook deltas")
        cb = [0] * size
        cb[zero] = r.ie(7)
        for j in range(zero - 1, -1, -1):
            cb[j] = cb[j + 1] - r.ue(egk) - 1
        for j in range(zero + 1, size):
            cb[j] = cb[j - 1] + r.ue(egk) + 1
        return cls(codebook=cb, cb_zero_offset=zero, codebook_egk=egk)

    def write(self, w: BitWriter) -> None:
        cb = [int(v) for v in self.codebook]
        if not cb or not 0 <= self.cb_zero_offset < len(cb):
            raise ConfigError("codebook needs >= 1 entry and 0 <= cb_zero_offset < size")
        if any(b <= a for a, b in zip(cb, cb[1:])):
            raise ConfigError("codebook entries must be strictly increasing")
        z = self.cb_zero_offset
        w.u(4, self.codebook_egk)
        w.ue(2, len(cb))
        w.ie(2, self.codebook_center_offset)
        w.ie(7, cb[z])
        for j in range(z - 1, -1, -1):
            w.ue(self.codebook_egk, cb[j + 1] - cb[j] - 1)
        for j in range(z + 1, len(cb)):
            w.ue(self.codebook_egk, cb[j] - cb[j - 1] - 1)


# --- cabac_entry_point_list ---------------------------------------------------------------
@dataclass(frozen=True)
class CabacEntryPoint:
    """One coded entry point (see module doc for ``bit_offset_delta``)."""

    cabac_offset: int
    dq_state: int
    bit_offset_delta: int

    def packed(self) -> int:
        """NNCodec's packing ``(bit_offset << 11) | (offset << 3) | dq_state``."""
        return (self.bit_offset_delta << 11) | (self.cabac_offset << 3) | self.dq_state


def read_entry_point_list(r: BitReader, count: int, dq_flag: int) -> list[CabacEntryPoint]:
    """``cabac_entry_point_list(count, dq_flag)``."""
    r.ensure(count * 9, "cabac_entry_point_list")
    eps: list[CabacEntryPoint] = []
    delta = 0
    for j in range(count):
        offset = r.u(8)
        state = r.u(3) if dq_flag else 0
        delta = r.ue(11) if j == 0 else delta + r.ie(7)
        eps.append(CabacEntryPoint(offset, state, delta))
    return eps


def write_entry_point_list(w: BitWriter, eps: Sequence[CabacEntryPoint], dq_flag: int) -> None:
    """Mirror of :func:`read_entry_point_list`."""
    prev = 0
    for j, ep in enumerate(eps):
        w.u(8, ep.cabac_offset)
        if dq_flag:
            w.u(3, ep.dq_state)
        elif ep.dq_state:
            raise ConfigError("dq_state must be 0 when dq_flag = 0")
        if j == 0:
            w.ue(11, ep.bit_offset_delta)
        else:
            w.ie(7, ep.bit_offset_delta - prev)
        prev = ep.bit_offset_delta


def num_block_rows_minus1(payload_type: int, compressed_parameter_types: int,
                          tensor_dimensions: Sequence[int], scan_order: int,
                          g_number_of_rows: int | None = None,
                          decomposition_rank: int | None = None,
                          decomposed_tensor_type: str = "G") -> int:
    """Number of coded entry points (NNCodec's numBlockRowsMinus1, notes §4.9); >= 0.

    ``tensor_dimensions`` are the weight's. With DC, BLOCK NDUs count G's and H's block rows
    minus one each, non-BLOCK NDUs those of G (rows ``g_number_of_rows``) or H (rows
    ``decomposition_rank``).
    """
    shift = 2 + scan_order
    block = 1 << shift

    def rows_minus1(d0: int) -> int:
        return ((d0 + block - 1) >> shift) - 1

    if compressed_parameter_types & _DC:
        if g_number_of_rows is None or decomposition_rank is None:
            raise ConfigError("DC needs g_number_of_rows and decomposition_rank")
        if payload_type == PayloadType.BLOCK:
            n = rows_minus1(g_number_of_rows) + rows_minus1(decomposition_rank)
        elif decomposed_tensor_type == "G":
            n = rows_minus1(g_number_of_rows)
        else:
            n = rows_minus1(decomposition_rank)
    else:
        n = rows_minus1(int(tensor_dimensions[0]))
    return max(n, 0)


# --- the header ---------------------------------------------------------------------------
def _profile(ctx: "StreamContext | None") -> int:
    return ctx.general_profile_idc if ctx is not None else 0


def _indexed(ctx: "StreamContext | None") -> int:
    return ctx.mps_topology_indexed_reference_flag if ctx is not None else 0


def _parent_signalling(ctx: "StreamContext | None") -> int:
    return ctx.mps_parent_signalling_enabled_flag if ctx is not None else 0


@dataclass
class CompressedDataUnitHeader:
    """``nnr_compressed_data_unit_header()``; field names are the syntax element names.

    Flags gating one optional value are properties (``codebook_present_flag``,
    ``nnr_decompressed_data_format_present_flag``, ``tensor_dimensions_flag``,
    ``nnr_multiple_topology_elements_present_flag``, ``count_*``).
    """

    nnr_compressed_data_unit_payload_type: int = int(PayloadType.FLOAT)
    input_parameters_present_flag: int = 1
    # exactly one of the four id forms is set
    topology_elem_id: str | None = None
    topology_elem_id_index: int | None = None
    topology_elem_id_list: list[str] | None = None
    topology_elem_id_index_list: list[int] | None = None
    # profile 1
    node_id_present_flag: int = 0
    device_id: int | None = None
    parameter_id: int | None = None
    put_node_depth: int | None = None
    parent_node_id_present_flag: int = 0
    parent_node_id_type: int | None = None
    temporal_context_modeling_flag: int = 0
    parent_device_id: int | None = None
    parent_node_payload_sha256: bytes | None = None
    parent_node_payload_sha512: bytes | None = None
    # coding parameters
    codebook: IntegerCodebook | None = None
    dq_flag: int = 0
    nnr_decompressed_data_format: int | None = None
    cabac_unary_length_flag: int = 1
    compressed_parameter_types: int = 0
    decomposition_rank: int | None = None
    g_number_of_rows: int | None = None
    tensor_dimensions: list[int] | None = None
    cabac_unary_length_minus1: int = 10
    codebook_dc: IntegerCodebook | None = None
    first_tensor_dimension_shift: int = 0
    scan_order: int = 0
    cabac_entry_point_list: list[CabacEntryPoint] = field(default_factory=list)

    # --- derived flags ---------------------------------------------------------------------
    @property
    def payload_type(self) -> int:
        return self.nnr_compressed_data_unit_payload_type

    @property
    def nnr_multiple_topology_elements_present_flag(self) -> int:
        return int(self.topology_elem_id_list is not None
                   or self.topology_elem_id_index_list is not None)

    @property
    def nnr_decompressed_data_format_present_flag(self) -> int:
        return int(self.nnr_decompressed_data_format is not None)

    @property
    def codebook_present_flag(self) -> int:
        return int(self.codebook is not None)

    @property
    def tensor_dimensions_flag(self) -> int:
        return int(self.tensor_dimensions is not None)

    @property
    def count_tensor_dimensions(self) -> int | None:
        return None if self.tensor_dimensions is None else len(self.tensor_dimensions)

    @property
    def count_topology_elements_minus2(self) -> int | None:
        ids = self.topology_elem_id_list or self.topology_elem_id_index_list
        return None if ids is None else len(ids) - 2

    @property
    def topology_elem_ids(self) -> list[str] | list[int]:
        """The element ids in header order (names, or indices when indexed)."""
        for v in (self.topology_elem_id_list, self.topology_elem_id_index_list):
            if v is not None:
                return list(v)
        single = self.topology_elem_id if self.topology_elem_id is not None \
            else self.topology_elem_id_index
        return [] if single is None else [single]  # type: ignore[list-item]

    @property
    def cabac_unary_length(self) -> int:
        """N, the number of greater-than flags."""
        return self.cabac_unary_length_minus1 + 1

    @property
    def uses_cabac(self) -> bool:
        return self.nnr_compressed_data_unit_payload_type in _CABAC_TYPES

    @property
    def has_dc_codebook(self) -> bool:
        """Whether ``integer_codebook("dc")`` is in the syntax."""
        return (self.nnr_compressed_data_unit_payload_type == PayloadType.BLOCK
                and bool(self.compressed_parameter_types & _DC)
                and self.codebook is not None)

    # --- reading ---------------------------------------------------------------------------
    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None, dims_hint: DimsHint = None,
             decomposed_tensor_type: str | None = None) -> "CompressedDataUnitHeader":
        """Read the header up to and including its ``byte_alignment()``."""
        h = cls(cabac_unary_length_flag=0,
                cabac_unary_length_minus1=DEFAULT_CABAC_UNARY_LENGTH_MINUS1)
        where = r.byte_position
        h.nnr_compressed_data_unit_payload_type = r.u(5)
        if h.nnr_compressed_data_unit_payload_type > PayloadType.BLOCK:
            raise NonConformingBitstreamError(
                f"reserved payload type {h.nnr_compressed_data_unit_payload_type}", offset=where)
        multiple = r.u(1)
        format_present = r.u(1)
        h.input_parameters_present_flag = r.u(1)
        h._read_ids(r, multiple, _indexed(ctx))
        if _profile(ctx) == 1:
            h._read_node_ids(r, _parent_signalling(ctx))
        if h.nnr_compressed_data_unit_payload_type in (PayloadType.FLOAT, PayloadType.BLOCK):
            if r.u(1):
                h.codebook = IntegerCodebook.read(r)
        if h.uses_cabac:
            h.dq_flag = r.u(1)
        if format_present:
            h.nnr_decompressed_data_format = r.u(7)
        if h.input_parameters_present_flag:
            h._read_input_parameters(r, multiple)
        if h.has_dc_codebook:
            h.codebook_dc = IntegerCodebook.read(r)
        dims = h.resolved_dimensions(dims_hint)
        if len(dims) > 1:
            if _profile(ctx) == 1:
                h.first_tensor_dimension_shift = r.ue(1)
            where = r.byte_position
            h.scan_order = r.u(4)
            if h.scan_order > MAX_SCAN_ORDER:
                raise NonConformingBitstreamError(f"reserved scan_order {h.scan_order}",
                                                  offset=where)
            if h.scan_order > 0:
                n = h.num_entry_points(dims, ctx, decomposed_tensor_type)
                h.cabac_entry_point_list = read_entry_point_list(r, n, h.dq_flag)
        r.byte_alignment()
        return h

    def _read_ids(self, r: BitReader, multiple: int, indexed: int) -> None:
        if multiple:
            ids = read_topology_elements_ids_list(r, indexed)
            if indexed:
                self.topology_elem_id_index_list = ids  # type: ignore[assignment]
            else:
                self.topology_elem_id_list = ids  # type: ignore[assignment]
        elif indexed:
            self.topology_elem_id_index = r.ue(7)
        else:
            self.topology_elem_id = r.st()

    def _read_node_ids(self, r: BitReader, parent_signalling: int) -> None:
        self.node_id_present_flag = r.u(1)
        if self.node_id_present_flag:
            self.device_id = r.ue(1)
            self.parameter_id = r.ue(5)
            self.put_node_depth = r.ue(4)
        if not parent_signalling:
            return
        self.parent_node_id_present_flag = r.u(1)
        if not self.parent_node_id_present_flag:
            return
        where = r.byte_position
        self.parent_node_id_type = r.u(2)
        self.temporal_context_modeling_flag = r.u(1)
        if self.parent_node_id_type == ParentNodeIdType.ICNN_NDU_ID:
            self.parent_device_id = r.ue(1)
            if not self.node_id_present_flag:
                self.parameter_id = r.ue(5)
                self.put_node_depth = r.ue(4)
        elif self.parent_node_id_type == ParentNodeIdType.ICNN_NDU_PL_SHA256:
            self.parent_node_payload_sha256 = r.u(256).to_bytes(32, "big")
        elif self.parent_node_id_type == ParentNodeIdType.ICNN_NDU_PL_SHA512:
            self.parent_node_payload_sha512 = r.u(512).to_bytes(64, "big")
        else:
            raise NonConformingBitstreamError(
                f"reserved parent_node_id_type {self.parent_node_id_type}", offset=where)

    def _read_input_parameters(self, r: BitReader, multiple: int) -> None:
        dims_present = r.u(1)
        self.cabac_unary_length_flag = r.u(1)
        self.compressed_parameter_types = r.u(4)
        if self.compressed_parameter_types & _DC:
            self.decomposition_rank = r.ue(3)
            self.g_number_of_rows = r.ue(3)
        if dims_present:
            count = r.ue(1)
            r.ensure(8 * count, "tensor_dimensions")
            self.tensor_dimensions = [r.ue(7) for _ in range(count)]
        if self.nnr_compressed_data_unit_payload_type != PayloadType.BLOCK and multiple:
            raise UnsupportedFeatureError(
                "topology_tensor_dimension_mapping() (split tensors) is not implemented")
        if self.cabac_unary_length_flag:
            self.cabac_unary_length_minus1 = r.u(8)

    # --- shared helpers ----------------------------------------------------------------------
    def resolved_dimensions(self, dims_hint: DimsHint = None) -> list[int]:
        """The weight dimensions: coded ones, else the out-of-band hint."""
        if self.tensor_dimensions is not None:
            return list(self.tensor_dimensions)
        hint = dims_hint(self) if callable(dims_hint) else dims_hint
        if hint is None:
            raise UnsupportedFeatureError(
                "tensor dimensions are not in the NDU header (out of band); pass dims_hint")
        return [int(d) for d in hint]

    def decomposed_type(self, ctx: "StreamContext | None" = None,
                        hint: str | None = None) -> str:
        """``"G"`` or ``"H"`` for a non-BLOCK DC NDU: hint, name suffix, then stream order."""
        if hint is not None:
            if hint not in ("G", "H"):
                raise ConfigError(f"decomposed_tensor_type must be 'G' or 'H', not {hint!r}")
            return hint
        name = self.topology_elem_id or ""
        if name.endswith("_G") or name.endswith("_H"):
            return name[-1]
        return "H" if ctx is not None and ctx.dc_g_pending else "G"

    def num_entry_points(self, dims: Sequence[int], ctx: "StreamContext | None" = None,
                         decomposed_tensor_type: str | None = None) -> int:
        """numBlockRowsMinus1 for this header (``scan_order`` > 0 and ``len(dims)`` > 1)."""
        kind = "G"
        if (self.compressed_parameter_types & _DC
                and self.nnr_compressed_data_unit_payload_type != PayloadType.BLOCK):
            kind = self.decomposed_type(ctx, decomposed_tensor_type)
        return num_block_rows_minus1(self.nnr_compressed_data_unit_payload_type,
                                     self.compressed_parameter_types, dims, self.scan_order,
                                     self.g_number_of_rows, self.decomposition_rank, kind)

    # --- writing ---------------------------------------------------------------------------
    def write(self, w: BitWriter, ctx: "StreamContext | None" = None, dims_hint: DimsHint = None,
              decomposed_tensor_type: str | None = None) -> None:
        """Write the header including its final ``byte_alignment()``."""
        self._validate(ctx)
        pt = self.nnr_compressed_data_unit_payload_type
        w.u(5, pt)
        w.u(1, self.nnr_multiple_topology_elements_present_flag)
        w.u(1, self.nnr_decompressed_data_format_present_flag)
        w.u(1, self.input_parameters_present_flag)
        self._write_ids(w, _indexed(ctx))
        if _profile(ctx) == 1:
            self._write_node_ids(w, _parent_signalling(ctx))
        if pt in (PayloadType.FLOAT, PayloadType.BLOCK):
            w.u(1, self.codebook_present_flag)
            if self.codebook is not None:
                self.codebook.write(w)
        if self.uses_cabac:
            w.u(1, self.dq_flag)
        if self.nnr_decompressed_data_format is not None:
            w.u(7, self.nnr_decompressed_data_format)
        if self.input_parameters_present_flag:
            self._write_input_parameters(w)
        if self.has_dc_codebook:
            if self.codebook_dc is None:
                raise ConfigError("BLOCK + DC + codebook needs codebook_dc")
            self.codebook_dc.write(w)
        self._write_tail(w, ctx, self.resolved_dimensions(dims_hint), decomposed_tensor_type)
        w.byte_alignment()

    def _write_ids(self, w: BitWriter, indexed: int) -> None:
        if self.topology_elem_id_list is not None or self.topology_elem_id_index_list is not None:
            ids = self.topology_elem_id_index_list if indexed else self.topology_elem_id_list
            if ids is None:
                raise ConfigError("the id list form does not match "
                                  "mps_topology_indexed_reference_flag")
            write_topology_elements_ids_list(w, indexed, ids)
        elif indexed:
            if self.topology_elem_id_index is None:
                raise ConfigError("indexed topology reference needs topology_elem_id_index")
            w.ue(7, self.topology_elem_id_index)
        else:
            if self.topology_elem_id is None:
                raise ConfigError("topology_elem_id is required")
            w.st(self.topology_elem_id)

    def _write_node_ids(self, w: BitWriter, parent_signalling: int) -> None:
        w.u(1, self.node_id_present_flag)
        if self.node_id_present_flag:
            w.ue(1, _req(self.device_id, "device_id"))
            w.ue(5, _req(self.parameter_id, "parameter_id"))
            w.ue(4, _req(self.put_node_depth, "put_node_depth"))
        if not parent_signalling:
            return
        w.u(1, self.parent_node_id_present_flag)
        if not self.parent_node_id_present_flag:
            return
        kind = _req(self.parent_node_id_type, "parent_node_id_type")
        w.u(2, kind)
        w.u(1, self.temporal_context_modeling_flag)
        if kind == ParentNodeIdType.ICNN_NDU_ID:
            w.ue(1, _req(self.parent_device_id, "parent_device_id"))
            if not self.node_id_present_flag:
                w.ue(5, _req(self.parameter_id, "parameter_id"))
                w.ue(4, _req(self.put_node_depth, "put_node_depth"))
        elif kind == ParentNodeIdType.ICNN_NDU_PL_SHA256:
            w.u(256, int.from_bytes(_hash(self.parent_node_payload_sha256, 32), "big"))
        elif kind == ParentNodeIdType.ICNN_NDU_PL_SHA512:
            w.u(512, int.from_bytes(_hash(self.parent_node_payload_sha512, 64), "big"))
        else:
            raise ConfigError(f"reserved parent_node_id_type {kind}")

    def _write_input_parameters(self, w: BitWriter) -> None:
        w.u(1, self.tensor_dimensions_flag)
        w.u(1, self.cabac_unary_length_flag)
        w.u(4, self.compressed_parameter_types)
        if self.compressed_parameter_types & _DC:
            w.ue(3, _req(self.decomposition_rank, "decomposition_rank"))
            w.ue(3, _req(self.g_number_of_rows, "g_number_of_rows"))
        if self.tensor_dimensions is not None:
            w.ue(1, len(self.tensor_dimensions))
            for d in self.tensor_dimensions:
                w.ue(7, d)
        if (self.nnr_compressed_data_unit_payload_type != PayloadType.BLOCK
                and self.nnr_multiple_topology_elements_present_flag):
            raise UnsupportedFeatureError(
                "topology_tensor_dimension_mapping() (split tensors) is not implemented")
        if self.cabac_unary_length_flag:
            w.u(8, self.cabac_unary_length_minus1)

    def _write_tail(self, w: BitWriter, ctx: "StreamContext | None", dims: list[int],
                    decomposed_tensor_type: str | None) -> None:
        n = 0
        if len(dims) > 1:
            if _profile(ctx) == 1:
                w.ue(1, self.first_tensor_dimension_shift)
            if not 0 <= self.scan_order <= MAX_SCAN_ORDER:
                raise ConfigError(f"scan_order {self.scan_order} is not in 0..{MAX_SCAN_ORDER}")
            w.u(4, self.scan_order)
            if self.scan_order > 0:
                n = self.num_entry_points(dims, ctx, decomposed_tensor_type)
        elif self.scan_order:
            raise ConfigError("scan_order can only be coded for tensors with > 1 dimension")
        if len(self.cabac_entry_point_list) != n:
            raise ConfigError(f"cabac_entry_point_list has {len(self.cabac_entry_point_list)} "
                              f"entries, the syntax needs {n}")
        write_entry_point_list(w, self.cabac_entry_point_list, self.dq_flag)

    def _validate(self, ctx: "StreamContext | None") -> None:
        forms = [self.topology_elem_id, self.topology_elem_id_index,
                 self.topology_elem_id_list, self.topology_elem_id_index_list]
        if sum(f is not None for f in forms) != 1:
            raise ConfigError("exactly one topology element id form must be set")
        if not self.uses_cabac and self.nnr_compressed_data_unit_payload_type \
                != PayloadType.RAW_FLOAT:
            raise ConfigError(f"reserved payload type {self.nnr_compressed_data_unit_payload_type}")
        if self.codebook is not None and self.nnr_compressed_data_unit_payload_type not in (
                PayloadType.FLOAT, PayloadType.BLOCK):
            raise ConfigError("a codebook is only coded for FLOAT and BLOCK payloads")
        if self.codebook_dc is not None and not self.has_dc_codebook:
            raise ConfigError("codebook_dc is only coded for BLOCK + DC with a codebook")
        if not self.input_parameters_present_flag and (
                self.tensor_dimensions is not None or self.compressed_parameter_types
                or self.cabac_unary_length_flag):
            raise ConfigError("input parameters set while input_parameters_present_flag = 0")
        if _profile(ctx) != 1 and (self.node_id_present_flag or self.parent_node_id_present_flag):
            raise ConfigError("node / parent ids need general_profile_idc = 1")
        if not _parent_signalling(ctx) and self.parent_node_id_present_flag:
            raise ConfigError("parent ids need mps_parent_signalling_enabled_flag = 1")


def _req(value: int | None, name: str) -> int:
    if value is None:
        raise ConfigError(f"{name} is required by the syntax")
    return value


def _hash(value: bytes | None, size: int) -> bytes:
    if value is None or len(value) != size:
        raise ConfigError(f"parent node payload hash must be {size} bytes")
    return bytes(value)
