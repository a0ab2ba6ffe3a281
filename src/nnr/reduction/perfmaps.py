"""Performance maps: the model's metric measured at several levels of each reduction tool,
written into the MPS (``sparsification_performance_map()``, ``pruning_performance_map()``,
``unification_performance_map()``, ``decomposition_performance_map()``) so that a receiver can
pick a level without evaluating the model itself; optionally also per layer, in an NNR_LPS unit
before the layer's NDU(s) (sparsification, pruning and unification maps: the LPS has no
decomposition map).

:func:`measure_performance_maps` applies each tool at each level (the data-free variants),
optionally codes and decodes the result, calls the user's ``evaluate`` and returns a
:class:`PerformanceMaps` for ``nnr.encode(..., performance_maps=...)``. With ``layers=`` it
also measures each of those layers with the tool applied to that layer only
(:class:`LayerMaps`). :func:`read_performance_maps` reads the maps of a stream back.

Values written (the syntax names them; the standard leaves some units open):

- sparsification: ``sparsification_threshold`` = t (weights with ``|w| < t * RMS`` of their
  tensor zeroed), ``non_zero_ratio`` = nonzero fraction of the weights, accuracy;
- pruning: ``pruning_ratio`` = fraction of all parameters removed, accuracy;
- unification: ``unification_threshold`` = fraction of blocks unified, the block size in
  ``block_dimensions`` (0 = the whole axis), no reshaped / super-block dimensions;
- decomposition: ``mse_threshold`` = tol^2 (relative MSE bound), ``nn_reduction_ratio`` =
  parameters after / before, accuracy.

Layer maps (LPS) use the same fields for the layer alone: the threshold, ratio or fraction applies
to that layer's weight, ``non_zero_ratio`` is the layer's, and ``pruning_ratio`` is the fraction
of the layer's output channels removed (with the slices of its channel group).

Per-class accuracies are written when ``evaluate`` returns ``"<metric>_per_class"`` (a list).
Every map codes its count as entries + 1 (NNCodec's loop bound, see
:mod:`nnr.bitstream.units.performance_maps`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

from nnr.bitstream.units.model_parameter_set import ModelParameterSet
from nnr.bitstream.units.performance_maps import (DecompositionPerformanceMap,
                                                  PruningPerformanceMap,
                                                  SparsificationPerformanceMap,
                                                  UnificationPerformanceMap)
from nnr.errors import ConfigError

__all__ = ["PerformanceMaps", "LayerMaps", "MapLevels", "measure_performance_maps",
           "read_performance_maps", "Evaluate"]

#: ``evaluate(tensors) -> metrics`` (a dict holding the metric) or the metric itself.
Evaluate = Callable[[Mapping[str, np.ndarray]], Any]

_MAX_ENTRIES = 254      # the count is u(8) and codes entries + 1


@dataclass(frozen=True)
class LayerMaps:
    """The performance maps of one layer (each optional), written in an NNR_LPS unit right
    before the NDU(s) of the layer's weight. The LPS syntax has no decomposition map."""

    sparsification: SparsificationPerformanceMap | None = None
    pruning: PruningPerformanceMap | None = None
    unification: UnificationPerformanceMap | None = None

    @property
    def has_maps(self) -> bool:
        return any(m is not None for m in (self.sparsification, self.pruning,
                                           self.unification))

    def lps(self, mps: ModelParameterSet):
        """The NNR_LPS payload: these maps, and the MPS's quantization method, qp density and
        quantization parameter (what the following NDUs' qps are coded against, so that a
        decoder that takes the LPS values decodes exactly what one that keeps the MPS values
        does; NNCodec reads the LPS values whenever an LPS was seen)."""
        from nnr.bitstream.units.layer_parameter_set import LayerParameterSet
        return LayerParameterSet(
            lps_quantization_method_flags=mps.mps_quantization_method_flags,
            lps_qp_density=mps.mps_qp_density if mps.has_qp else None,
            lps_quantization_parameter=mps.mps_quantization_parameter if mps.has_qp else None,
            sparsification_performance_map=self.sparsification,
            pruning_performance_map=self.pruning,
            unification_performance_map=self.unification)

    @classmethod
    def of(cls, lps: Any) -> "LayerMaps":
        """The maps of a parsed :class:`~nnr.bitstream.units.LayerParameterSet`."""
        return cls(lps.sparsification_performance_map, lps.pruning_performance_map,
                   lps.unification_performance_map)


@dataclass(frozen=True)
class PerformanceMaps:
    """The MPS performance maps an encoder writes (each optional), the metric's name
    (``performance_metric_type``, profile 1) and ``validation_set_performance`` (profile 1;
    the unreduced model's metric). ``layers`` (``{weight name: LayerMaps}``, optional) are the
    per-layer maps, each written in an NNR_LPS unit before that weight's NDU(s); the name must
    be the first tensor of an NDU (a weight, or the weight of a block)."""

    sparsification: SparsificationPerformanceMap | None = None
    pruning: PruningPerformanceMap | None = None
    unification: UnificationPerformanceMap | None = None
    decomposition: DecompositionPerformanceMap | None = None
    metric_type: str | None = None
    validation_set_performance: float | None = None
    layers: Mapping[str, LayerMaps] | None = None

    def apply(self, mps: ModelParameterSet, profile: int) -> None:
        """Put the maps into ``mps`` (the metric fields only in profile 1). The metric is
        valid for the layer maps too (``metric_type_performance_map_valid_flag``)."""
        mps.sparsification_performance_map = self.sparsification
        mps.pruning_performance_map = self.pruning
        mps.unification_performance_map = self.unification
        mps.decomposition_performance_map = self.decomposition
        if profile == 1 and self.metric_type is not None:
            any_maps = self.has_maps or bool(self.layers)
            mps.performance_metric_type = self.metric_type
            mps.metric_type_performance_map_valid_flag = int(any_maps)
            mps.validation_set_performance = self.validation_set_performance
            if not any_maps and self.validation_set_performance is None:
                mps.performance_metric_type = None

    @property
    def has_maps(self) -> bool:
        """Whether there is a model-wide (MPS) map."""
        return any(m is not None for m in (self.sparsification, self.pruning,
                                           self.unification, self.decomposition))

    def check(self) -> None:
        """Consistency of the fields (the metric fields are written in profile 1 only)."""
        if self.validation_set_performance is not None and self.metric_type is None:
            raise ConfigError("validation_set_performance needs a metric_type")
        if self.layers is not None:
            if not isinstance(self.layers, Mapping):
                raise ConfigError("PerformanceMaps.layers must map weight names to LayerMaps")
            for name, maps in self.layers.items():
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"layer map names must be tensor names, got {name!r}")
                if not isinstance(maps, LayerMaps):
                    raise ConfigError(f"the layer map of {name!r} must be an "
                                      "nnr.reduction.LayerMaps")
                if not maps.has_maps:
                    raise ConfigError(f"the layer map of {name!r} has no map")


def _f32(x: float) -> float:
    """The value as the flt(32) field carries it (so a written map equals the one read)."""
    return float(np.float32(x))


def _metric(result: Any, metric: str) -> tuple[float, list[float]]:
    if isinstance(result, Mapping):
        if metric not in result:
            raise ConfigError(f"evaluate() returned no {metric!r} (keys: {sorted(result)})")
        return _f32(result[metric]), [_f32(v) for v in result.get(metric + "_per_class", [])]
    return _f32(result), []


def _class_fields(per_class: list[float]) -> tuple[int, int, list[float]]:
    if len(per_class) > 255:
        raise ConfigError("performance maps carry at most 255 class accuracies")
    return len(per_class), 0, per_class


@dataclass
class _Runner:
    evaluate: Evaluate
    metric: str
    config: Any
    options: Mapping[str, Any]

    def __call__(self, tensors: Mapping[str, np.ndarray]) -> tuple[float, list[float]]:
        if self.config is not None or self.options:
            import nnr
            tensors = nnr.decode(nnr.encode(tensors, self.config, **self.options))
        return _metric(self.evaluate(tensors), self.metric)


def _levels(levels: Sequence[float] | None, what: str) -> list[float]:
    levels = list(levels or [])
    if len(levels) > _MAX_ENTRIES:
        raise ConfigError(f"{what}: at most {_MAX_ENTRIES} levels")
    return [_f32(v) for v in levels]


def _sparsification(tensors, run, levels, names: list[str] | None = None
                    ) -> SparsificationPerformanceMap | None:
    from nnr.reduction.sparsify import magnitude_sparsify, sparsity
    if not levels:
        return None
    m = SparsificationPerformanceMap(spm_count_thresholds=len(levels) + 1)
    for t in levels:
        reduced = magnitude_sparsify(tensors, threshold=t, names=names)
        acc, per_class = run(reduced)
        count, mask, values = _class_fields(per_class)
        m.sparsification_threshold.append(t)
        m.non_zero_ratio.append(_f32(1.0 - sparsity(reduced, names)))
        m.spm_nn_accuracy.append(acc)
        m.spm_count_classes.append(count)
        m.spm_class_bitmask.append(mask)
        m.spm_nn_class_accuracy.append(values)
    return m


def _pruning(tensors, run, levels, groups, layer: str | None = None
             ) -> PruningPerformanceMap | None:
    from nnr.reduction.prune import prune_channels
    if not levels:
        return None
    if groups is None:
        raise ConfigError("a pruning performance map needs the channel groups")
    if layer is not None:       # the layer's own group only: None when it has none
        groups = [g for g in groups if g.producer == layer]
        if not groups:
            return None
    before = sum(int(np.size(a)) for a in tensors.values())
    m = PruningPerformanceMap(ppm_count_pruning_ratios=len(levels) + 1)
    for r in levels:
        reduced, kept = prune_channels(tensors, groups, r)
        acc, per_class = run(reduced)
        count, mask, values = _class_fields(per_class)
        if layer is None:
            ratio = 1 - sum(int(np.size(a)) for a in reduced.values()) / before
        else:
            ratio = 1 - len(kept[layer]) / np.shape(tensors[layer])[0]
        m.pruning_ratio.append(_f32(ratio))
        m.ppm_nn_accuracy.append(acc)
        m.ppm_count_classes.append(count)
        m.ppm_class_bitmask.append(mask)
        m.ppm_nn_class_accuracy.append(values)
    return m


def _unification(tensors, run, levels, block, names: list[str] | None = None
                 ) -> UnificationPerformanceMap | None:
    from nnr.reduction.microstructure import unify
    if not levels:
        return None
    dims = [0 if b is None else int(b) for b in block]
    if any(not 0 <= d <= 255 for d in dims):
        raise ConfigError("unification block sizes must fit u(8)")
    m = UnificationPerformanceMap(upm_count_thresholds=len(levels) + 1)
    for r in levels:
        reduced, _ = unify(tensors, r, block=block, names=names)
        acc, per_class = run(reduced)
        m.count_reshaped_tensor_dimension.append(1)
        m.reshaped_tensor_dimensions.append([])
        m.count_super_block_dimension.append(1)
        m.super_block_dimensions.append([])
        m.count_block_dimension.append(len(dims) + 1)
        m.block_dimensions.append(dims)
        m.unification_threshold.append(r)
        m.upm_nn_accuracy.append(acc)
        # NNCodec reads as many class accuracies as the bitmask value: keep them equal
        m.upm_count_classes.append(len(per_class))
        m.upm_class_bitmask.append(len(per_class))
        m.upm_nn_class_accuracy.append(per_class)
    return m


def _decomposition(tensors, run, levels) -> DecompositionPerformanceMap | None:
    from nnr.reduction.lowrank import decompose, recompose
    if not levels:
        return None
    before = sum(int(np.size(a)) for a in tensors.values())
    m = DecompositionPerformanceMap(dpm_count_thresholds=len(levels) + 1)
    for tol in levels:
        coded, done = decompose(tensors, tol)
        after = sum(int(np.size(a)) for a in coded.values())
        model = dict(tensors)
        for w, lr in done.items():
            model[w] = recompose(lr.g, lr.h, lr.shape)
        acc, per_class = run(model)
        m.mse_threshold.append(_f32(tol * tol))
        m.dpm_nn_accuracy.append(acc)
        m.nn_reduction_ratio.append(_f32(after / before if before else 1.0))
        m.dpm_count_classes.append(len(per_class))
        m.dpm_nn_class_accuracy.append(per_class)
    return m


@dataclass(frozen=True)
class MapLevels:
    """The levels at which :func:`measure_performance_maps` measures each tool (empty: no
    map): sparsification thresholds, pruning ratios (with the channel ``groups``),
    unification ratios (with the ``block``), decomposition tolerances. Layer maps use the
    same sparsification, pruning and unification levels."""

    sparsification: Sequence[float] = ()
    pruning: Sequence[float] = ()
    groups: Sequence[Any] | None = None
    unification: Sequence[float] = ()
    block: Sequence[int | None] = (2, 2, None)
    decomposition: Sequence[float] = ()


def _layer_names(tensors: Mapping[str, np.ndarray], layers: bool | str | Iterable[str]
                 ) -> list[str]:
    from nnr.reduction._common import weight_names
    if layers is True or layers == "all":
        return weight_names(tensors)
    if isinstance(layers, (str, bytes)) or layers is False:
        raise ConfigError("layers must be True / 'all' or a collection of weight names")
    names = list(dict.fromkeys(layers))
    for n in weight_names(tensors, names):
        if np.ndim(tensors[n]) < 2:
            raise ConfigError(f"layer map of {n!r}: a layer map is for a weight (a float "
                              "tensor with two or more dimensions)")
    return names


def measure_performance_maps(tensors: Mapping[str, np.ndarray], evaluate: Evaluate,
                             levels: MapLevels, *, metric: str = "top1", config: Any = None,
                             layers: bool | str | Collection[str] | None = None,
                             **options: Any) -> PerformanceMaps:
    """Measure ``metric`` of ``evaluate`` at each of ``levels`` (see the module doc for what a
    level is) and return the maps. With ``config`` / ``options`` every reduced model is coded
    with them and decoded before it is evaluated.

    ``layers`` (``True`` / ``"all"``: every weight; or weight names) also measures per-layer
    maps (:attr:`PerformanceMaps.layers`, written in NNR_LPS units): each tool at each level
    applied to that layer alone (pruning: the layer's channel group, when it has one). This
    costs one evaluation per layer and level."""
    run = _Runner(evaluate, metric, config, options)
    ref, _ = run(tensors)
    spars = _levels(levels.sparsification, "sparsification")
    prun = _levels(levels.pruning, "pruning")
    unif = _levels(levels.unification, "unification")
    layer_maps: dict[str, LayerMaps] | None = None
    if layers is not None and layers is not False:
        layer_maps = {}
        for name in _layer_names(tensors, layers):
            lm = LayerMaps(
                sparsification=_sparsification(tensors, run, spars, [name]),
                pruning=_pruning(tensors, run, prun, levels.groups, name) if prun else None,
                unification=_unification(tensors, run, unif, levels.block, [name]))
            if lm.has_maps:
                layer_maps[name] = lm
    return PerformanceMaps(
        sparsification=_sparsification(tensors, run, spars),
        pruning=_pruning(tensors, run, prun, levels.groups),
        unification=_unification(tensors, run, unif, levels.block),
        decomposition=_decomposition(tensors, run, _levels(levels.decomposition,
                                                           "decomposition")),
        metric_type=metric, validation_set_performance=ref, layers=layer_maps)


def read_performance_maps(data: bytes | bytearray | memoryview) -> PerformanceMaps | None:
    """The performance maps of a stream (None when it has none): the MPS maps and metric,
    and the maps of every NNR_LPS unit under the layer of the NDU that follows it (the
    weight's name; a decomposed weight's, not ``<w>_G``). Only unit headers are parsed."""
    from nnr.bitstream.enums import NnrUnitType
    from nnr.bitstream.stream import iter_units
    from nnr.decoder import layer_name
    mps = None
    layers: dict[str, LayerMaps] = {}
    pending: list[LayerMaps] = []
    for unit in iter_units(bytes(data)):
        if unit.unit_type == NnrUnitType.MPS:
            mps = unit.payload
        elif unit.unit_type == NnrUnitType.LPS:
            pending.append(LayerMaps.of(unit.payload))
        elif unit.unit_type == NnrUnitType.NDU and pending:
            name = layer_name(unit)
            for lm in pending:
                if lm.has_maps:
                    layers[name] = lm
            pending = []
    if mps is None:
        return None
    maps = PerformanceMaps(
        mps.sparsification_performance_map, mps.pruning_performance_map,
        mps.unification_performance_map, mps.decomposition_performance_map,
        mps.performance_metric_type, mps.validation_set_performance, layers or None)
    if not maps.has_maps and not layers and maps.validation_set_performance is None:
        return None
    return maps
