"""Performance maps of the MPS and LPS payloads (notes §4.5), as NNCodec parses them.

Every map codes ``*_count_*`` and then ``count - 1`` entries (NNCodec's loop bound; a count of 0
gives no entries). Per entry the arrays below hold one element each.

NNCodec quirk, kept for compatibility: in ``unification_performance_map()`` the number of
``upm_nn_class_accuracy`` values of entry ``i`` is ``upm_class_bitmask[i]``, not
``upm_count_classes[i]``. NNCodec never writes these maps; treat the syntax as unverified
against the standard.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from nnr.bitstream.bits import BitReader, BitWriter
from nnr.errors import ConfigError

__all__ = [
    "SparsificationPerformanceMap",
    "PruningPerformanceMap",
    "UnificationPerformanceMap",
    "DecompositionPerformanceMap",
]


def _entries(count: int) -> int:
    return max(count - 1, 0)


def _check(name: str, seq: Sequence[object], n: int) -> None:
    if len(seq) != n:
        raise ConfigError(f"{name} has {len(seq)} entries, the syntax needs {n}")


def _read_floats(r: BitReader, n: int, what: str) -> list[float]:
    r.ensure(32 * n, what)
    return [r.flt() for _ in range(n)]


@dataclass
class SparsificationPerformanceMap:
    """``sparsification_performance_map()``."""

    spm_count_thresholds: int = 1
    sparsification_threshold: list[float] = field(default_factory=list)
    non_zero_ratio: list[float] = field(default_factory=list)
    spm_nn_accuracy: list[float] = field(default_factory=list)
    spm_count_classes: list[int] = field(default_factory=list)
    spm_class_bitmask: list[int] = field(default_factory=list)
    spm_nn_class_accuracy: list[list[float]] = field(default_factory=list)

    @classmethod
    def read(cls, r: BitReader) -> "SparsificationPerformanceMap":
        m = cls(spm_count_thresholds=r.u(8))
        for _ in range(_entries(m.spm_count_thresholds)):
            m.sparsification_threshold.append(r.flt())
            m.non_zero_ratio.append(r.flt())
            m.spm_nn_accuracy.append(r.flt())
            m.spm_count_classes.append(r.u(8))
            m.spm_class_bitmask.append(r.ue(7))
            m.spm_nn_class_accuracy.append(
                _read_floats(r, m.spm_count_classes[-1], "spm_nn_class_accuracy"))
        return m

    def write(self, w: BitWriter) -> None:
        n = _entries(self.spm_count_thresholds)
        for name in ("sparsification_threshold", "non_zero_ratio", "spm_nn_accuracy",
                     "spm_count_classes", "spm_class_bitmask", "spm_nn_class_accuracy"):
            _check(name, getattr(self, name), n)
        w.u(8, self.spm_count_thresholds)
        for i in range(n):
            w.flt(self.sparsification_threshold[i])
            w.flt(self.non_zero_ratio[i])
            w.flt(self.spm_nn_accuracy[i])
            w.u(8, self.spm_count_classes[i])
            w.ue(7, self.spm_class_bitmask[i])
            _check("spm_nn_class_accuracy[i]", self.spm_nn_class_accuracy[i],
                   self.spm_count_classes[i])
            for v in self.spm_nn_class_accuracy[i]:
                w.flt(v)


@dataclass
class PruningPerformanceMap:
    """``pruning_performance_map()``."""

    ppm_count_pruning_ratios: int = 1
    pruning_ratio: list[float] = field(default_factory=list)
    ppm_nn_accuracy: list[float] = field(default_factory=list)
    ppm_count_classes: list[int] = field(default_factory=list)
    ppm_class_bitmask: list[int] = field(default_factory=list)
    ppm_nn_class_accuracy: list[list[float]] = field(default_factory=list)

    @classmethod
    def read(cls, r: BitReader) -> "PruningPerformanceMap":
        m = cls(ppm_count_pruning_ratios=r.u(8))
        for _ in range(_entries(m.ppm_count_pruning_ratios)):
            m.pruning_ratio.append(r.flt())
            m.ppm_nn_accuracy.append(r.flt())
            m.ppm_count_classes.append(r.u(8))
            m.ppm_class_bitmask.append(r.ue(7))
            m.ppm_nn_class_accuracy.append(
                _read_floats(r, m.ppm_count_classes[-1], "ppm_nn_class_accuracy"))
        return m

    def write(self, w: BitWriter) -> None:
        n = _entries(self.ppm_count_pruning_ratios)
        for name in ("pruning_ratio", "ppm_nn_accuracy", "ppm_count_classes",
                     "ppm_class_bitmask", "ppm_nn_class_accuracy"):
            _check(name, getattr(self, name), n)
        w.u(8, self.ppm_count_pruning_ratios)
        for i in range(n):
            w.flt(self.pruning_ratio[i])
            w.flt(self.ppm_nn_accuracy[i])
            w.u(8, self.ppm_count_classes[i])
            w.ue(7, self.ppm_class_bitmask[i])
            _check("ppm_nn_class_accuracy[i]", self.ppm_nn_class_accuracy[i],
                   self.ppm_count_classes[i])
            for v in self.ppm_nn_class_accuracy[i]:
                w.flt(v)


@dataclass
class UnificationPerformanceMap:
    """``unification_performance_map()`` (with NNCodec's class-count quirk, see module doc).

    ``count_*`` hold the coded counts; the dimension lists hold ``count - 1`` values each.
    """

    upm_count_thresholds: int = 1
    count_reshaped_tensor_dimension: list[int] = field(default_factory=list)
    reshaped_tensor_dimensions: list[list[int]] = field(default_factory=list)
    count_super_block_dimension: list[int] = field(default_factory=list)
    super_block_dimensions: list[list[int]] = field(default_factory=list)
    count_block_dimension: list[int] = field(default_factory=list)
    block_dimensions: list[list[int]] = field(default_factory=list)
    unification_threshold: list[float] = field(default_factory=list)
    upm_nn_accuracy: list[float] = field(default_factory=list)
    upm_count_classes: list[int] = field(default_factory=list)
    upm_class_bitmask: list[int] = field(default_factory=list)
    upm_nn_class_accuracy: list[list[float]] = field(default_factory=list)

    _LISTS = ("count_reshaped_tensor_dimension", "reshaped_tensor_dimensions",
              "count_super_block_dimension", "super_block_dimensions", "count_block_dimension",
              "block_dimensions", "unification_threshold", "upm_nn_accuracy",
              "upm_count_classes", "upm_class_bitmask", "upm_nn_class_accuracy")

    @classmethod
    def read(cls, r: BitReader) -> "UnificationPerformanceMap":
        m = cls(upm_count_thresholds=r.u(8))
        for _ in range(_entries(m.upm_count_thresholds)):
            m.count_reshaped_tensor_dimension.append(r.ue(1))
            n = _entries(m.count_reshaped_tensor_dimension[-1])
            r.ensure(8 * n, "reshaped_tensor_dimensions")
            m.reshaped_tensor_dimensions.append([r.ue(7) for _ in range(n)])
            r.byte_alignment()
            m.count_super_block_dimension.append(r.u(8))
            m.super_block_dimensions.append(
                [r.u(8) for _ in range(_entries(m.count_super_block_dimension[-1]))])
            m.count_block_dimension.append(r.u(8))
            m.block_dimensions.append(
                [r.u(8) for _ in range(_entries(m.count_block_dimension[-1]))])
            m.unification_threshold.append(r.flt())
            m.upm_nn_accuracy.append(r.flt())
            m.upm_count_classes.append(r.u(8))
            m.upm_class_bitmask.append(r.ue(7))
            m.upm_nn_class_accuracy.append(   # NNCodec loops over the bitmask value
                _read_floats(r, m.upm_class_bitmask[-1], "upm_nn_class_accuracy"))
        return m

    def write(self, w: BitWriter) -> None:
        n = _entries(self.upm_count_thresholds)
        for name in self._LISTS:
            _check(name, getattr(self, name), n)
        w.u(8, self.upm_count_thresholds)
        for i in range(n):
            w.ue(1, self.count_reshaped_tensor_dimension[i])
            _check("reshaped_tensor_dimensions[i]", self.reshaped_tensor_dimensions[i],
                   _entries(self.count_reshaped_tensor_dimension[i]))
            for d in self.reshaped_tensor_dimensions[i]:
                w.ue(7, d)
            w.byte_alignment()
            self._write_u8_list(w, self.count_super_block_dimension[i],
                                self.super_block_dimensions[i], "super_block_dimensions[i]")
            self._write_u8_list(w, self.count_block_dimension[i], self.block_dimensions[i],
                                "block_dimensions[i]")
            w.flt(self.unification_threshold[i])
            w.flt(self.upm_nn_accuracy[i])
            w.u(8, self.upm_count_classes[i])
            w.ue(7, self.upm_class_bitmask[i])
            _check("upm_nn_class_accuracy[i]", self.upm_nn_class_accuracy[i],
                   self.upm_class_bitmask[i])
            for v in self.upm_nn_class_accuracy[i]:
                w.flt(v)

    @staticmethod
    def _write_u8_list(w: BitWriter, count: int, values: Sequence[int], name: str) -> None:
        _check(name, values, _entries(count))
        w.u(8, count)
        for v in values:
            w.u(8, v)


@dataclass
class DecompositionPerformanceMap:
    """``decomposition_performance_map()``."""

    dpm_count_thresholds: int = 1
    mse_threshold: list[float] = field(default_factory=list)
    dpm_nn_accuracy: list[float] = field(default_factory=list)
    nn_reduction_ratio: list[float] = field(default_factory=list)
    dpm_count_classes: list[int] = field(default_factory=list)
    dpm_nn_class_accuracy: list[list[float]] = field(default_factory=list)

    @classmethod
    def read(cls, r: BitReader) -> "DecompositionPerformanceMap":
        m = cls(dpm_count_thresholds=r.u(8))
        for _ in range(_entries(m.dpm_count_thresholds)):
            m.mse_threshold.append(r.flt())
            m.dpm_nn_accuracy.append(r.flt())
            m.nn_reduction_ratio.append(r.flt())
            m.dpm_count_classes.append(r.u(16))
            m.dpm_nn_class_accuracy.append(
                _read_floats(r, m.dpm_count_classes[-1], "dpm_nn_class_accuracy"))
        return m

    def write(self, w: BitWriter) -> None:
        n = _entries(self.dpm_count_thresholds)
        for name in ("mse_threshold", "dpm_nn_accuracy", "nn_reduction_ratio",
                     "dpm_count_classes", "dpm_nn_class_accuracy"):
            _check(name, getattr(self, name), n)
        w.u(8, self.dpm_count_thresholds)
        for i in range(n):
            w.flt(self.mse_threshold[i])
            w.flt(self.dpm_nn_accuracy[i])
            w.flt(self.nn_reduction_ratio[i])
            w.u(16, self.dpm_count_classes[i])
            _check("dpm_nn_class_accuracy[i]", self.dpm_nn_class_accuracy[i],
                   self.dpm_count_classes[i])
            for v in self.dpm_nn_class_accuracy[i]:
                w.flt(v)
