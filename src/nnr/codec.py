"""Public entry points: encode, decode, inspect, save, load."""
from __future__ import annotations

import copy
import mmap
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from nnr.bitstream.enums import CompressedParameterTypes as CPT
from nnr.bitstream.enums import NnrUnitType, PayloadType
from nnr.config import DecodeLimits, EncodeConfig
from nnr.decoder import DecoderState, decode_units
from nnr.encoder import EncoderState, Topology, encode_tensors
from nnr.errors import ConfigError

__all__ = ["encode", "decode", "decode_stream", "DecodedStream", "Topology", "inspect", "save", "load", "StreamInfo", "UnitInfo", "TensorInfo",
           "DecoderState", "EncoderState"]


def encode(tensors: Mapping[str, Any], config: EncodeConfig | None = None, *,
           state: EncoderState | None = None, topology: Topology | None = None,
           target: Any = None, **options: Any) -> bytes:
    """Code a mapping of names to arrays as one NNR bitstream.

    Float tensors are quantized (``qp``, ``dq``, ``codebook`` ...; see :class:`EncodeConfig`);
    integer tensors are coded losslessly as NNR_PT_INT. ``state`` (edition 2) makes the stream
    an incremental update against the tensors coded before with the same state. ``topology``
    is carried in the NNR_TPL unit (see :func:`decode_stream`). ``target`` (a
    :class:`nnr.search.MetricTarget` or :class:`nnr.search.SizeTarget`) searches per-tensor
    qps for the smallest stream that keeps a task metric, or the best one that fits a size.
    """
    if target is not None:
        if state is not None or topology is not None:
            raise ConfigError("target-driven search codes a plain model (no state / topology)")
        from nnr.search import encode_for_target
        return encode_for_target(tensors, target, config, **options).data
    cfg = EncodeConfig.from_options(config, **options)
    return encode_tensors(tensors, cfg, state, topology)


@dataclass
class DecodedStream:
    """A decoded stream: its tensors, the topology unit's content and the profile; the MPS
    performance maps and the per-layer (NNR_LPS) maps as :func:`inspect` reports them."""

    tensors: dict[str, np.ndarray]
    topology: Topology | None
    profile: int
    performance_maps: dict[str, Any] = field(default_factory=dict)
    layer_performance_maps: dict[str, dict[str, Any]] = field(default_factory=dict)


def decode_stream(data: bytes | bytearray | memoryview, *, state: DecoderState | None = None,
                  legacy: bool | None = None, limits: DecodeLimits | None = None,
                  threads: int | None = None, recompose: bool = False) -> DecodedStream:
    """Like :func:`decode`, also returning the NNR_TPL topology and the profile. With
    ``recompose`` every decomposed weight (``<w>_G``, ``<w>_H``) comes back as
    ``W = G @ H`` under its own name (:func:`nnr.decoder.decode_recomposed`)."""
    from nnr.decoder import recomposed_units
    out = DecodedStream({}, None, 0)
    units = decode_units(_buffer(data), state=state, legacy=legacy, limits=limits,
                         threads=threads)
    pairs = recomposed_units(units) if recompose else \
        ((unit, [(t.name, t.array) for t in tensors]) for unit, _, tensors in units)
    layers = _LayerMapReader()
    for unit, named in pairs:
        if unit.unit_type == NnrUnitType.STR:
            out.profile = unit.header.general_profile_idc
        elif unit.unit_type == NnrUnitType.MPS:
            out.performance_maps = performance_maps_of(unit.payload)
        elif unit.unit_type == NnrUnitType.TPL and unit.payload.topology_data is not None:
            out.topology = Topology(unit.header.topology_storage_format,
                                    bytes(unit.payload.topology_data),
                                    unit.header.topology_compression_format)
        layers.take(unit)
        out.tensors.update(named)
    out.layer_performance_maps = layers.finish()
    return out


def decode(data: bytes | bytearray | memoryview, *, state: DecoderState | None = None,
           legacy: bool | None = None, limits: DecodeLimits | None = None,
           threads: int | None = None, names: Iterable[str] | None = None
           ) -> dict[str, np.ndarray]:
    """Decode an NNR bitstream into ``{name: array}`` (stream order).

    Uniform and DQ tensors come back as float32, codebook tensors as float64 and integer
    tensors as int32, exactly as NNCodec reconstructs them. For an incremental sequence pass
    the same :class:`DecoderState` to every call; an update stream then yields the decoded
    differences, and a tensor without an NDU is absent. ``threads`` NDUs are decoded at once
    (default: all cores; the result is the same for any count). ``names`` decodes only the
    units holding those tensors (random access; all tensors of a BLOCK unit come along).
    """
    wanted = None if names is None else set(names)
    out: dict[str, np.ndarray] = {}
    for _, _, tensors in decode_units(_buffer(data), state=state, legacy=legacy, limits=limits,
                                      threads=threads, names=wanted):
        for t in tensors:
            out[t.name] = t.array
    if wanted is not None and not wanted <= set(out):
        raise ConfigError(f"no tensor named {sorted(wanted - set(out))[0]!r} in the stream")
    return out


def _buffer(data):
    """Bytes-like input as an indexable buffer (an mmap or bytes is used as it is)."""
    if isinstance(data, (bytes, mmap.mmap)):
        return data
    return bytes(data)


@dataclass
class UnitInfo:
    index: int
    unit_type: str
    offset: int
    size: int


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    payload_type: str
    kind: str
    qp: int | None
    dq: bool
    scan_order: int
    codebook: bool
    ndu_index: int
    coded_bytes: int


@dataclass
class StreamInfo:
    """What a stream holds: units, tensors and the coding tools used."""

    profile: int
    size: int
    units: list[UnitInfo] = field(default_factory=list)
    tensors: list[TensorInfo] = field(default_factory=list)
    tools: set[str] = field(default_factory=set)
    #: The MPS performance maps (:func:`performance_maps_of`); empty when there are none.
    performance_maps: dict[str, Any] = field(default_factory=dict)
    #: The layer maps of the NNR_LPS units, ``{layer: maps}`` (:func:`performance_maps_of`);
    #: the layer is the weight of the NDU after the LPS (a decomposed weight's own name).
    layer_performance_maps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tools"] = sorted(self.tools)
        for t in d["tensors"]:
            t["shape"] = list(t["shape"])
        return d


_MAP_NAMES = ("sparsification", "pruning", "unification", "decomposition")


def _tools_of(unit, ctx, tensors) -> set[str]:
    hdr = unit.header
    tools = {f"scan_order={hdr.scan_order}"} if any(len(t.array.shape) > 1 for t in tensors) else set()
    if hdr.dq_flag:
        tools.add("dependent_quantization")
    if hdr.codebook is not None:
        tools.add("codebook")
    if hdr.payload_type == PayloadType.BLOCK:
        tools.add("block")
    if hdr.compressed_parameter_types & CPT.DC:
        tools.add("decomposition")
    if hdr.cabac_entry_point_list:
        tools.add("entry_points")
    if hdr.temporal_context_modeling_flag:
        tools.add("temporal_context_adaptation")
    if hdr.parent_node_id_present_flag:
        tools.add("parent_node_id")
    for t in tensors:
        if t.coding is not None and t.coding.hdsp:
            tools.add("hdsp")
        if t.coding is not None and t.coding.row_skip is not None:
            tools.add("row_skipping")
    tools.add(PayloadType(hdr.payload_type).name.lower())
    return tools


class _LayerMapReader:
    """Collects the maps of NNR_LPS units, each under the layer of the NDU that follows it
    (an LPS with no NDU after it is reported as ``"#<unit index>"``)."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[int, dict[str, Any]]] = []

    def take(self, unit) -> None:
        from nnr.decoder import layer_name
        if unit.unit_type == NnrUnitType.LPS:
            maps = performance_maps_of(unit.payload)
            if maps:
                self.pending.append((unit.index, maps))
        elif unit.unit_type == NnrUnitType.NDU and self.pending:
            name = layer_name(unit)
            for _, maps in self.pending:
                self.maps.setdefault(name, {}).update(maps)
            self.pending = []

    def finish(self) -> dict[str, dict[str, Any]]:
        for index, maps in self.pending:
            self.maps[f"#{index}"] = maps
        self.pending = []
        return self.maps


def performance_maps_of(mps: Any) -> dict[str, Any]:
    """The performance maps of a model parameter set (or of a layer parameter set, which has
    no decomposition map and no metric fields) as plain values: one list of levels per map
    present (``sparsification``, ``pruning``, ``unification``, ``decomposition``), and
    ``metric`` / ``validation_set_performance`` (profile 1). Empty when there is nothing."""
    out: dict[str, Any] = {}

    def classes(values: list[float]) -> dict[str, Any]:
        return {"class_accuracy": list(values)} if values else {}

    m = mps.sparsification_performance_map
    if m is not None:
        out["sparsification"] = [
            {"threshold": t, "non_zero_ratio": r, "accuracy": a, **classes(c)}
            for t, r, a, c in zip(m.sparsification_threshold, m.non_zero_ratio,
                                  m.spm_nn_accuracy, m.spm_nn_class_accuracy)]
    m = mps.pruning_performance_map
    if m is not None:
        out["pruning"] = [{"pruning_ratio": r, "accuracy": a, **classes(c)}
                          for r, a, c in zip(m.pruning_ratio, m.ppm_nn_accuracy,
                                             m.ppm_nn_class_accuracy)]
    m = mps.unification_performance_map
    if m is not None:
        out["unification"] = [
            {"threshold": t, "block_dimensions": list(b), "accuracy": a, **classes(c)}
            for t, b, a, c in zip(m.unification_threshold, m.block_dimensions,
                                  m.upm_nn_accuracy, m.upm_nn_class_accuracy)]
    m = getattr(mps, "decomposition_performance_map", None)
    if m is not None:
        out["decomposition"] = [
            {"mse_threshold": t, "nn_reduction_ratio": r, "accuracy": a, **classes(c)}
            for t, r, a, c in zip(m.mse_threshold, m.nn_reduction_ratio, m.dpm_nn_accuracy,
                                  m.dpm_nn_class_accuracy)]
    metric = getattr(mps, "performance_metric_type", None)
    validation = getattr(mps, "validation_set_performance", None)
    if out or validation is not None:
        if metric is not None:
            out["metric"] = metric
        if validation is not None:
            out["validation_set_performance"] = validation
    return out


def inspect(data: bytes | bytearray | memoryview, *, state: DecoderState | None = None,
            legacy: bool | None = None, limits: DecodeLimits | None = None) -> StreamInfo:
    """Parse and decode a stream and describe it (every payload is decoded, so the qp of each
    tensor is known and a corrupt payload is reported). An update stream that uses temporal
    context adaptation needs the decoder ``state`` of the streams before it; it is copied,
    not changed. ``limits`` as for :func:`decode`."""
    data = bytes(data)
    info = StreamInfo(profile=0, size=len(data))
    work = copy.deepcopy(state) if state is not None else DecoderState()
    layers = _LayerMapReader()
    for unit, ctx, tensors in decode_units(data, state=work, legacy=legacy, limits=limits):
        info.units.append(UnitInfo(unit.index, unit.type_name, unit.offset, unit.size))
        layers.take(unit)
        if unit.unit_type == NnrUnitType.STR:
            info.profile = unit.header.general_profile_idc
        if unit.unit_type == NnrUnitType.MPS:
            info.performance_maps = performance_maps_of(unit.payload)
            if any(k in info.performance_maps for k in _MAP_NAMES):
                info.tools.add("performance_maps")
        if unit.unit_type != NnrUnitType.NDU:
            continue
        info.tools |= _tools_of(unit, ctx, tensors)
        for t in tensors:
            info.tensors.append(TensorInfo(
                t.name, tuple(int(d) for d in t.array.shape), str(t.array.dtype),
                PayloadType(t.payload_type).name, t.kind, t.qp, t.dq, t.scan_order, t.codebook,
                t.ndu_index, t.coded_bytes))
    info.layer_performance_maps = layers.finish()
    if info.layer_performance_maps:
        info.tools.add("layer_performance_maps")
    return info


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(tensors: Mapping[str, Any], path: str | os.PathLike, config: EncodeConfig | None = None,
         **options: Any) -> int:
    """Encode ``tensors`` and write the stream to ``path`` atomically; returns its size."""
    data = encode(tensors, config, **options)
    _atomic_write(Path(path), data)
    return len(data)


def load(path: str | os.PathLike, **kwargs: Any) -> dict[str, np.ndarray]:
    """Read and decode an NNR file (``.nnr`` / ``.nnc``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such file: {p}")
    return decode(p.read_bytes(), **kwargs)
