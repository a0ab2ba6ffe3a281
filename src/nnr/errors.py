"""The one exception hierarchy of nnr.

Every failure nnr reports is an :class:`NnrError`. Bitstream problems carry, where known, the
index and type of the NNR unit and the byte offset at which the problem was found, and name
them in the message.
"""
from __future__ import annotations

__all__ = [
    "NnrError",
    "ConfigError",
    "UnsupportedFeatureError",
    "BitstreamError",
    "TruncatedBitstreamError",
    "NonConformingBitstreamError",
    "ResourceLimitError",
]


class NnrError(Exception):
    """Base class of every error nnr raises."""


class ConfigError(NnrError, ValueError):
    """An option or an input (tensor dtype, shape, value) that nnr cannot encode as asked."""


class UnsupportedFeatureError(NnrError):
    """A valid request or stream that uses a tool nnr does not implement."""


class BitstreamError(NnrError):
    """A stream that is not a valid NNR bitstream.

    ``unit_index``, ``unit_type`` and ``offset`` (byte offset in the whole stream) are set when
    known and are appended to the message.
    """

    def __init__(self, message: str, *, unit_index: int | None = None,
                 unit_type: str | None = None, offset: int | None = None) -> None:
        self.reason = message
        self.unit_index = unit_index
        self.unit_type = unit_type
        self.offset = offset
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.unit_index is not None:
            where.append(f"unit {self.unit_index}")
        if self.unit_type is not None:
            where.append(self.unit_type)
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason

    def located(self, *, unit_index: int | None = None, unit_type: str | None = None,
                offset: int | None = None) -> "BitstreamError":
        """Return a copy of this error with missing location fields filled in."""
        err = type(self)(self.reason,
                         unit_index=self.unit_index if self.unit_index is not None else unit_index,
                         unit_type=self.unit_type if self.unit_type is not None else unit_type,
                         offset=self.offset if self.offset is not None else offset)
        return err


class TruncatedBitstreamError(BitstreamError):
    """The stream ends before a unit, field or payload it announces."""


class NonConformingBitstreamError(BitstreamError):
    """A field holds a reserved or inconsistent value, or the payload does not decode."""


class ResourceLimitError(BitstreamError):
    """A stream asks for more elements or memory than the configured limits allow."""
