"""How many elements an NDU may declare for the bytes it carries (hostile-input protection).

A decoder allocates the declared tensors before it decodes them, so a few hundred bytes that
declare a 2^31-element tensor would make it allocate gigabytes. DeepCABAC cannot code more
than about 780 elements per payload byte (a run of zero levels, every bin the most probable
symbol), so an NDU's declared element count may exceed

    ``max_elements_per_payload_byte`` x payload bytes + ``free_elements``  (2000 x bytes + 4096)

only for tensors that the payload can legitimately code that cheaply:

* a tensor whose levels are all implied by a one-entry codebook (profile 1: nothing is coded
  for it), and
* a tensor with row skipping (profile 1, two or more rows and columns: one bin skips a whole
  row); its row count must still fit the budget, one bin per row.

The elements of such "sparse" tensors beyond the budget are added up over the stream and may
not exceed ``max_sparse_elements`` (2^26 by default, 256 MiB of int32 levels). RAW_FLOAT
payloads hold every element (4 bytes each) and are checked by the parser. Every dimension, and
the product of the dimensions after the first, must fit 32 bits (the native core's
``TensorParams``), and a tensor has at most 64 dimensions (numpy's limit). The absolute
limits ``max_tensor_elements`` / ``max_total_elements`` are
checked by the decoder.

The parameters are fields of :class:`nnr.DecodeLimits` (with these defaults; an object without
such a field gets the default below). :func:`check_ndu` is called by the NDU parser
(:mod:`nnr.bitstream.stream`), i.e. before any decoding or allocation, for ``nnr.decode``,
``nnr.inspect`` and the CLI alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

from nnr.bitstream.enums import CompressedParameterTypes, PayloadType
from nnr.errors import ResourceLimitError

__all__ = ["DEFAULTS", "MAX_DIMS", "LimitValues", "NduTensor", "ndu_tensors", "check_dims",
           "check_ndu", "limit_values"]

_DC = int(CompressedParameterTypes.DC)
_U32 = 1 << 32
#: The most dimensions a numpy array can have.
MAX_DIMS = 64


@dataclass(frozen=True)
class LimitValues:
    """The policy's parameters (defaults; overridden by fields of ``nnr.DecodeLimits``)."""

    max_elements_per_payload_byte: int = 2000
    free_elements: int = 4096
    max_sparse_elements: int = 1 << 26


DEFAULTS = LimitValues()


def limit_values(limits: Any | None) -> LimitValues:
    """The policy parameters of ``limits`` (a DecodeLimits or None), defaults where absent."""
    if limits is None:
        return DEFAULTS
    return LimitValues(**{name: int(getattr(limits, name, getattr(DEFAULTS, name)))
                          for name in LimitValues.__dataclass_fields__})


@dataclass(frozen=True)
class NduTensor:
    """One tensor an NDU declares: rows x cols elements; ``cheap`` says how it may be coded
    below one bin per element (``"codebook"``, ``"row_skip"`` or ``""``)."""

    rows: int
    cols: int
    cheap: str = ""

    @property
    def elements(self) -> int:
        return self.rows * self.cols


def _weight(rows: int, cols: int, codebook: Any, profile: int, payload_type: int) -> NduTensor:
    if profile == 1 and payload_type != PayloadType.INT and codebook is not None \
            and codebook.codebook_size == 1:
        return NduTensor(rows, cols, "codebook")
    if profile == 1 and rows > 1 and cols > 1:
        return NduTensor(rows, cols, "row_skip")
    return NduTensor(rows, cols)


def _rows_cols(dims: list[int]) -> tuple[int, int]:
    return (dims[0] if dims else 1), (prod(dims[1:]) if len(dims) > 1 else 1)


def ndu_tensors(hdr: Any, dims: list[int], profile: int) -> list[NduTensor]:
    """The tensors a CABAC-coded NDU declares (weight or G and H, then the 1-D block members),
    as the decoder will allocate them. A non-BLOCK NDU with decomposition holds G or H: the
    larger of the two is counted."""
    pt = hdr.nnr_compressed_data_unit_payload_type
    cpt = hdr.compressed_parameter_types
    rows, cols = _rows_cols(dims)
    out: list[NduTensor] = []
    if cpt & _DC:
        g_rows, rank = hdr.g_number_of_rows or 0, hdr.decomposition_rank or 0
        h_cols = prod(dims) // g_rows if g_rows else 0
        g = _weight(g_rows, rank, hdr.codebook, profile, pt)
        h = _weight(rank, h_cols, hdr.codebook_dc if pt == PayloadType.BLOCK else hdr.codebook,
                    profile, pt)
        out += [g, h] if pt == PayloadType.BLOCK else [max(g, h, key=lambda t: t.elements)]
    else:
        out.append(_weight(rows, cols, hdr.codebook, profile, pt))
    if pt == PayloadType.BLOCK:
        members = bool(cpt & CompressedParameterTypes.LS) + 4 * bool(
            cpt & CompressedParameterTypes.BN) + bool(cpt & CompressedParameterTypes.BI)
        out += [NduTensor(rows, 1)] * members
    return out


def check_dims(dims: list[int]) -> None:
    """Dimensions an array can have (any payload type)."""
    if len(dims) > MAX_DIMS:
        raise ResourceLimitError(f"a tensor of {len(dims)} dimensions; arrays have at most "
                                 f"{MAX_DIMS}")


def check_ndu(tensors: list[NduTensor], payload_bytes: int, limits: Any | None,
              sparse_total: int = 0) -> int:
    """Raise ResourceLimitError when ``tensors`` cannot be coded in ``payload_bytes``;
    return the new stream-wide count of sparse elements beyond the budget."""
    for t in tensors:
        if t.rows >= _U32 or t.cols >= _U32:
            raise ResourceLimitError(f"a tensor of {t.rows} x {t.cols} elements: rows and the "
                                     "product of the other dimensions must be below 2^32")
    v = limit_values(limits)
    budget = v.max_elements_per_payload_byte * payload_bytes + v.free_elements
    total = sum(t.elements for t in tensors)
    if total <= budget:
        return sparse_total
    dense = sum(t.elements for t in tensors if not t.cheap)
    if dense > budget:
        raise ResourceLimitError(
            f"the NDU declares {total} elements ({dense} coded one by one) in a payload of "
            f"{payload_bytes} bytes; at most {v.max_elements_per_payload_byte} per byte + "
            f"{v.free_elements} can be coded")
    for t in tensors:
        if t.cheap == "row_skip" and t.rows > budget:
            raise ResourceLimitError(
                f"a tensor of {t.rows} rows in a payload of {payload_bytes} bytes: at most "
                f"{budget} rows can be coded")
    sparse_total += sum(t.elements for t in tensors if t.cheap)
    if sparse_total > v.max_sparse_elements:
        raise ResourceLimitError(
            f"the stream declares {sparse_total} elements in tensors coded almost for free "
            f"(one-entry codebook or skipped rows), more than max_sparse_elements = "
            f"{v.max_sparse_elements}")
    return sparse_total
