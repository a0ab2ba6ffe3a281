"""Layer parameter set (``NNR_LPS``, notes §4.6). NNCodec parses it but never writes it.

If an LPS is present, its qp and qp_density replace the MPS values for the following NDUs.
The map flags are properties derived from the presence of the maps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.bitstream.enums import QuantizationMethodFlags
from nnr.bitstream.units.model_parameter_set import QP_METHODS
from nnr.bitstream.units.performance_maps import (
    PruningPerformanceMap,
    SparsificationPerformanceMap,
    UnificationPerformanceMap,
)
from nnr.errors import ConfigError

if TYPE_CHECKING:
    from nnr.bitstream.stream import StreamContext

__all__ = ["LayerParameterSetHeader", "LayerParameterSet"]


@dataclass
class LayerParameterSetHeader:
    """``nnr_layer_parameter_set_unit_header()``."""

    lps_self_contained_flag: int = 1
    nnr_reserved_zero_7bits: int = 0

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None) -> "LayerParameterSetHeader":
        return cls(lps_self_contained_flag=r.u(1), nnr_reserved_zero_7bits=r.u(7))

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None) -> None:
        w.u(1, self.lps_self_contained_flag)
        w.u(7, self.nnr_reserved_zero_7bits)


@dataclass
class LayerParameterSet:
    """``nnr_layer_parameter_set_unit_payload()``."""

    lps_quantization_method_flags: int = int(QuantizationMethodFlags.QSU)
    lps_qp_density: int | None = 2
    lps_quantization_parameter: int | None = 0
    sparsification_performance_map: SparsificationPerformanceMap | None = None
    pruning_performance_map: PruningPerformanceMap | None = None
    unification_performance_map: UnificationPerformanceMap | None = None
    nnr_reserved_zero_1_bits: int = 0   # first bit of the payload
    nnr_reserved_zero_1bit: int = 0     # bit after the quantization method flags

    @property
    def lps_sparsification_flag(self) -> int:
        return int(self.sparsification_performance_map is not None)

    @property
    def lps_pruning_flag(self) -> int:
        return int(self.pruning_performance_map is not None)

    @property
    def lps_unification_flag(self) -> int:
        return int(self.unification_performance_map is not None)

    @property
    def has_qp(self) -> bool:
        return bool(self.lps_quantization_method_flags & QP_METHODS)

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None,
             header: Any = None) -> "LayerParameterSet":
        p = cls(lps_qp_density=None, lps_quantization_parameter=None)
        p.nnr_reserved_zero_1_bits = r.u(1)
        flags = [r.u(1) for _ in range(3)]   # sparsification, pruning, unification
        p.lps_quantization_method_flags = r.u(3)
        p.nnr_reserved_zero_1bit = r.u(1)
        if p.has_qp:
            p.lps_qp_density = r.u(3)
            p.lps_quantization_parameter = r.i(13)
        if flags[0]:
            p.sparsification_performance_map = SparsificationPerformanceMap.read(r)
        if flags[1]:
            p.pruning_performance_map = PruningPerformanceMap.read(r)
        if flags[2]:
            p.unification_performance_map = UnificationPerformanceMap.read(r)
        r.byte_alignment()
        return p

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None, header: Any = None) -> None:
        if self.has_qp and (self.lps_qp_density is None
                            or self.lps_quantization_parameter is None):
            raise ConfigError("lps_qp_density and lps_quantization_parameter are required")
        w.u(1, self.nnr_reserved_zero_1_bits)
        w.u(1, self.lps_sparsification_flag)
        w.u(1, self.lps_pruning_flag)
        w.u(1, self.lps_unification_flag)
        w.u(3, self.lps_quantization_method_flags)
        w.u(1, self.nnr_reserved_zero_1bit)
        if self.has_qp:
            w.u(3, self.lps_qp_density)
            w.i(13, self.lps_quantization_parameter)
        for pm in (self.sparsification_performance_map, self.pruning_performance_map,
                   self.unification_performance_map):
            if pm is not None:
                pm.write(w)
        w.byte_alignment()
