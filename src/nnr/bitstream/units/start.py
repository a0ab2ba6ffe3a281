"""NNR start unit (``NNR_STR``, notes §4.4): header ``general_profile_idc u(8)``, empty payload."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnr.bitstream.bits import BitReader, BitWriter

if TYPE_CHECKING:
    from nnr.bitstream.stream import StreamContext

__all__ = ["StartUnitHeader"]


@dataclass
class StartUnitHeader:
    """``nnr_start_unit_header()``. NNCodec 0.3.1 writes profile 0, 2.x writes 1."""

    general_profile_idc: int = 1

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None) -> "StartUnitHeader":
        return cls(general_profile_idc=r.u(8))

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None) -> None:
        w.u(8, self.general_profile_idc)
