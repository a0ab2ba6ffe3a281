"""Topology unit (``NNR_TPL``, notes §4.7).

Payload by ``topology_storage_format``:

- ``REFLIST`` (6): ``topology_elements_ids_list(0)``, kept in ``topology_elem_id_list``;
- ``PRUN`` (5): pruning topology container, not implemented (NNCodec has none either);
- otherwise ``topology_data``: all payload bytes to the end of the unit. NNCodec codes it as
  ``st(v)`` and writes the empty string, i.e. the single byte ``00``; :meth:`TopologyPayload.text`
  reads such a payload back as a string.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.bitstream.enums import TopologyCompressionFormat, TopologyStorageFormat
from nnr.bitstream.units.compressed_data import (
    read_topology_elements_ids_list,
    write_topology_elements_ids_list,
)
from nnr.errors import ConfigError, NonConformingBitstreamError, UnsupportedFeatureError

if TYPE_CHECKING:
    from nnr.bitstream.stream import StreamContext

__all__ = ["TopologyUnitHeader", "TopologyPayload"]


@dataclass
class TopologyUnitHeader:
    """``nnr_topology_unit_header()``."""

    topology_storage_format: int = int(TopologyStorageFormat.UNREC)
    topology_compression_format: int = int(TopologyCompressionFormat.RAW)

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None) -> "TopologyUnitHeader":
        return cls(topology_storage_format=r.u(8), topology_compression_format=r.u(8))

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None) -> None:
        w.u(8, self.topology_storage_format)
        w.u(8, self.topology_compression_format)


@dataclass
class TopologyPayload:
    """``nnr_topology_unit_payload()``: ``topology_data`` bytes or a REFLIST id list."""

    topology_data: bytes | None = b"\0"
    topology_elem_id_list: list[str] | None = None

    @classmethod
    def from_text(cls, text: str = "") -> "TopologyPayload":
        """``topology_data`` as NNCodec's ``st(v)``: UTF-8 plus NUL."""
        return cls(topology_data=text.encode("utf-8") + b"\0")

    def text(self) -> str:
        """``topology_data`` read as ``st(v)`` (the NUL must be its last byte)."""
        data = self.topology_data or b""
        if not data.endswith(b"\0") or b"\0" in data[:-1]:
            raise NonConformingBitstreamError("topology_data is not one NUL-terminated string")
        try:
            return data[:-1].decode("utf-8", "strict")
        except UnicodeDecodeError as exc:
            raise NonConformingBitstreamError(f"not valid UTF-8: {exc}") from None

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None,
             header: TopologyUnitHeader | None = None) -> "TopologyPayload":
        fmt = header.topology_storage_format if header is not None else 0
        if fmt == TopologyStorageFormat.PRUN:
            raise UnsupportedFeatureError("NNR_TPL_PRUN (pruning topology container) is not "
                                          "implemented")
        if fmt == TopologyStorageFormat.REFLIST:
            ids = read_topology_elements_ids_list(r, 0)
            return cls(topology_data=None, topology_elem_id_list=ids)  # type: ignore[arg-type]
        return cls(topology_data=r.skip_to_end())

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None,
              header: TopologyUnitHeader | None = None) -> None:
        fmt = header.topology_storage_format if header is not None else 0
        if fmt == TopologyStorageFormat.PRUN:
            raise UnsupportedFeatureError("NNR_TPL_PRUN (pruning topology container) is not "
                                          "implemented")
        if fmt == TopologyStorageFormat.REFLIST:
            if self.topology_elem_id_list is None:
                raise ConfigError("NNR_TPL_REFLIST needs topology_elem_id_list")
            write_topology_elements_ids_list(w, 0, self.topology_elem_id_list)
            return
        if self.topology_data is None:
            raise ConfigError("topology_data is required")
        w.bytes(self.topology_data)
