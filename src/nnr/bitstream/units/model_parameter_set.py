"""Model parameter set (``NNR_MPS``, notes §4.5). The unit header is empty; all is payload.

The ``mps_*_flag`` map flags, ``base_model_id_present_flag`` and
``validation_set_performance_present_flag`` are properties derived from whether the
corresponding value is present (not ``None``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.bitstream.enums import QuantizationMethodFlags
from nnr.bitstream.units.performance_maps import (
    DecompositionPerformanceMap,
    PruningPerformanceMap,
    SparsificationPerformanceMap,
    UnificationPerformanceMap,
)
from nnr.errors import ConfigError

if TYPE_CHECKING:
    from nnr.bitstream.stream import StreamContext

__all__ = ["ModelParameterSet", "QP_METHODS"]

#: Quantization method flags that carry a qp_density and a quantization parameter.
QP_METHODS = int(QuantizationMethodFlags.QSU | QuantizationMethodFlags.QCB)


def _profile(ctx: "StreamContext | None") -> int:
    return ctx.general_profile_idc if ctx is not None else 0


@dataclass
class ModelParameterSet:
    """``nnr_model_parameter_set_unit_payload()``; defaults are what NNCodec writes."""

    topology_carriage_flag: int = 1
    mps_quantization_method_flags: int = int(QuantizationMethodFlags.QSU)
    mps_topology_indexed_reference_flag: int = 0
    # profile 1 only
    metric_type_performance_map_valid_flag: int = 0
    mps_parent_signalling_enabled_flag: int = 0
    nnr_pre_flag: int = 0
    base_model_id: str | None = None
    performance_metric_type: str | None = None
    # present when mps_quantization_method_flags & (QSU | QCB)
    mps_qp_density: int | None = 2
    mps_quantization_parameter: int | None = 0
    sparsification_performance_map: SparsificationPerformanceMap | None = None
    pruning_performance_map: PruningPerformanceMap | None = None
    unification_performance_map: UnificationPerformanceMap | None = None
    decomposition_performance_map: DecompositionPerformanceMap | None = None
    validation_set_performance: float | None = None   # profile 1 only
    nnr_reserved_zero_7bits: int = 0   # profile 0
    nnr_reserved_zero_1bit: int = 0    # profile 1 without parent signalling
    nnr_reserved_zero_2bits: int = 0   # profile 1

    @property
    def mps_sparsification_flag(self) -> int:
        return int(self.sparsification_performance_map is not None)

    @property
    def mps_pruning_flag(self) -> int:
        return int(self.pruning_performance_map is not None)

    @property
    def mps_unification_flag(self) -> int:
        return int(self.unification_performance_map is not None)

    @property
    def mps_decomposition_performance_map_flag(self) -> int:
        return int(self.decomposition_performance_map is not None)

    @property
    def base_model_id_present_flag(self) -> int:
        return int(self.base_model_id is not None)

    @property
    def validation_set_performance_present_flag(self) -> int:
        return int(self.validation_set_performance is not None)

    @property
    def has_qp(self) -> bool:
        return bool(self.mps_quantization_method_flags & QP_METHODS)

    @classmethod
    def read(cls, r: BitReader, ctx: "StreamContext | None" = None,
             header: Any = None) -> "ModelParameterSet":
        m = cls(mps_qp_density=None, mps_quantization_parameter=None)
        m.topology_carriage_flag = r.u(1)
        flags = [r.u(1) for _ in range(4)]   # sparsification, pruning, unification, decomp.
        m.mps_quantization_method_flags = r.u(3)
        m.mps_topology_indexed_reference_flag = r.u(1)
        validation_present = 0
        if _profile(ctx) == 1:
            base_present = r.u(1)
            validation_present = r.u(1)
            m.metric_type_performance_map_valid_flag = r.u(1)
            m.mps_parent_signalling_enabled_flag = r.u(1)
            if m.mps_parent_signalling_enabled_flag:
                m.nnr_pre_flag = r.u(1)
            else:
                m.nnr_reserved_zero_1bit = r.u(1)
            m.nnr_reserved_zero_2bits = r.u(2)
            if base_present:
                m.base_model_id = r.st()
            if validation_present or m.metric_type_performance_map_valid_flag:
                m.performance_metric_type = r.st()
        else:
            m.nnr_reserved_zero_7bits = r.u(7)
        if m.has_qp:
            m.mps_qp_density = r.u(3)
            m.mps_quantization_parameter = r.i(13)
        if flags[0]:
            m.sparsification_performance_map = SparsificationPerformanceMap.read(r)
        if flags[1]:
            m.pruning_performance_map = PruningPerformanceMap.read(r)
        if flags[2]:
            m.unification_performance_map = UnificationPerformanceMap.read(r)
        if flags[3]:
            m.decomposition_performance_map = DecompositionPerformanceMap.read(r)
        if validation_present:
            m.validation_set_performance = r.flt()
        r.byte_alignment()
        return m

    def write(self, w: BitWriter, ctx: "StreamContext | None" = None, header: Any = None) -> None:
        profile = _profile(ctx)
        self._validate(profile)
        w.u(1, self.topology_carriage_flag)
        w.u(1, self.mps_sparsification_flag)
        w.u(1, self.mps_pruning_flag)
        w.u(1, self.mps_unification_flag)
        w.u(1, self.mps_decomposition_performance_map_flag)
        w.u(3, self.mps_quantization_method_flags)
        w.u(1, self.mps_topology_indexed_reference_flag)
        if profile == 1:
            w.u(1, self.base_model_id_present_flag)
            w.u(1, self.validation_set_performance_present_flag)
            w.u(1, self.metric_type_performance_map_valid_flag)
            w.u(1, self.mps_parent_signalling_enabled_flag)
            w.u(1, self.nnr_pre_flag if self.mps_parent_signalling_enabled_flag
                else self.nnr_reserved_zero_1bit)
            w.u(2, self.nnr_reserved_zero_2bits)
            if self.base_model_id is not None:
                w.st(self.base_model_id)
            if self.performance_metric_type is not None:
                w.st(self.performance_metric_type)
        else:
            w.u(7, self.nnr_reserved_zero_7bits)
        if self.has_qp:
            w.u(3, self.mps_qp_density)
            w.i(13, self.mps_quantization_parameter)
        for pm in (self.sparsification_performance_map, self.pruning_performance_map,
                   self.unification_performance_map, self.decomposition_performance_map):
            if pm is not None:
                pm.write(w)
        if self.validation_set_performance is not None:
            w.flt(self.validation_set_performance)
        w.byte_alignment()

    def _validate(self, profile: int) -> None:
        if self.has_qp and (self.mps_qp_density is None
                            or self.mps_quantization_parameter is None):
            raise ConfigError("mps_qp_density and mps_quantization_parameter are required")
        if profile != 1:
            if (self.mps_parent_signalling_enabled_flag or self.nnr_pre_flag
                    or self.metric_type_performance_map_valid_flag
                    or self.base_model_id is not None or self.performance_metric_type is not None
                    or self.validation_set_performance is not None):
                raise ConfigError("MPS fields of general_profile_idc 1 set in a profile-0 stream")
            return
        if self.nnr_pre_flag and not self.mps_parent_signalling_enabled_flag:
            raise ConfigError("nnr_pre_flag needs mps_parent_signalling_enabled_flag = 1")
        wants_metric = (self.validation_set_performance is not None
                        or self.metric_type_performance_map_valid_flag)
        if wants_metric != (self.performance_metric_type is not None):
            raise ConfigError("performance_metric_type must be given exactly when "
                              "validation_set_performance or "
                              "metric_type_performance_map_valid_flag is set")
