"""Quantization unit (``NNR_QNT``, notes §4.8). NNCodec parses ``quantization_data st(v)`` and
never uses it. We keep ``quantization_data`` as all payload bytes to the unit end (an ``st(v)``
is one UTF-8 string plus NUL, see :meth:`QuantizationPayload.text`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.errors import NonConformingBitstreamError

if TYPE_CHECKING:
    from nnr.bitstream.stream import StreamContext

__all__ = ["QuantizationUnitHeader", "QuantizationPayload"]


@dataclass
class QuantizationUnitHeader:
    """``nnr_quantization_unit_header()``."""

    quantization_storage_format: int = 0
    quantization_compression_format: int = 0

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None) -> "QuantizationUnitHeader":
        return cls(quantization_storage_format=r.u(8), quantization_compression_format=r.u(8))

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None) -> None:
        w.u(8, self.quantization_storage_format)
        w.u(8, self.quantization_compression_format)


@dataclass
class QuantizationPayload:
    """``nnr_quantization_unit_payload()``."""

    quantization_data: bytes = b"\0"

    @classmethod
    def from_text(cls, text: str) -> "QuantizationPayload":
        return cls(quantization_data=text.encode("utf-8") + b"\0")

    def text(self) -> str:
        """``quantization_data`` read as ``st(v)``."""
        data = self.quantization_data
        if not data.endswith(b"\0") or b"\0" in data[:-1]:
            raise NonConformingBitstreamError("quantization_data is not one NUL-terminated "
                                              "string")
        try:
            return data[:-1].decode("utf-8", "strict")
        except UnicodeDecodeError as exc:
            raise NonConformingBitstreamError(f"not valid UTF-8: {exc}") from None

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None,
             header: QuantizationUnitHeader | None = None) -> "QuantizationPayload":
        return cls(quantization_data=r.skip_to_end())

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None,
              header: QuantizationUnitHeader | None = None) -> None:
        w.bytes(self.quantization_data)
