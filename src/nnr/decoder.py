"""Decoding of a parsed NNR bitstream into named tensors (NDU by NDU)."""
from __future__ import annotations

import copy
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import prod
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from nnr._inorder import InOrder
from nnr.bitstream.enums import CompressedParameterTypes as CPT
from nnr.bitstream.enums import NnrUnitType, PayloadType
from nnr.bitstream.stream import (ParsedUnit, StreamContext, iter_file_units, iter_units,
                                 raw_float_tensor)
from nnr.config import DecodeLimits
from nnr.entropy import EntryPoint, TensorCoding, TensorSpec, decode_payload
from nnr.errors import BitstreamError, NonConformingBitstreamError, ResourceLimitError
from nnr.quantization import dequantize, dequantize_codebook, step_size

__all__ = ["DecoderState", "DecodedTensor", "decode_units", "decode_file_units",
           "decode_recomposed", "recomposed_units", "layer_name"]


@dataclass
class DecoderState:
    """What a decoder keeps between the streams of an incremental sequence (edition 2).

    Per tensor name: the integer levels of the most recent coded version (the parent levels
    for temporal context adaptation), its ``put_node_depth`` and ``parameter_id``; the
    ``device_id``; and the HDSP history (positions nonzero in an earlier update).
    """

    levels: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)
    parameter_id: dict[str, int] = field(default_factory=dict)
    device_id: int | None = None
    hdsp_history: dict[str, np.ndarray] = field(default_factory=dict)
    #: Update-tree nodes by SHA-256 of their NDU payload: {digest: {name: (levels, depth)}},
    #: the parents that hash-signalled updates refer to (the most recent ``max_nodes`` kept).
    nodes: dict[bytes, dict[str, tuple[np.ndarray, int]]] = field(default_factory=dict)
    max_nodes: int = 256


@dataclass
class DecodedTensor:
    """One decoded tensor with what the stream said about it."""

    name: str
    array: np.ndarray
    ndu_index: int          # index of the unit in the stream
    payload_type: int
    kind: str               # weight, bias, weight.ls, bn.beta, ..., unspecified
    qp: int | None
    dq: bool
    scan_order: int
    codebook: bool
    coding: TensorCoding | None
    coded_bytes: int        # size of the NDU (shared by the tensors of a BLOCK NDU)


@dataclass
class _Element:
    name: str
    dims: list[int]
    kind: str
    codebook: object = None   # IntegerCodebook or None


def _block_elements(hdr, dims: list[int]) -> list[_Element]:
    """Tensors of a BLOCK NDU in payload order (LS, BI, BN, weight or G/H), named from the
    header's element list, whose order is weight (G, H), LS, BN, BI."""
    cpt = hdr.compressed_parameter_types
    ids = hdr.topology_elem_ids
    n_w = 2 if cpt & CPT.DC else 1
    pos = {"weight": 0}
    nxt = n_w
    for key, present, count in (("ls", cpt & CPT.LS, 1), ("bn", cpt & CPT.BN, 4),
                                ("bi", cpt & CPT.BI, 1)):
        if present:
            pos[key] = nxt
            nxt += count
    if nxt != len(ids):
        raise NonConformingBitstreamError(
            f"BLOCK NDU lists {len(ids)} elements, compressed_parameter_types {cpt} needs {nxt}")
    d0 = [dims[0]]
    out: list[_Element] = []
    if cpt & CPT.LS:
        out.append(_Element(str(ids[pos["ls"]]), d0, "weight.ls"))
    if cpt & CPT.BI:
        out.append(_Element(str(ids[pos["bi"]]), d0, "bias"))
    if cpt & CPT.BN:
        for j, part in enumerate(("beta", "gamma", "mean", "var")):
            out.append(_Element(str(ids[pos["bn"] + j]), d0, "bn." + part))
    if cpt & CPT.DC:
        g, h = _dc_dims(hdr, dims)
        out.append(_Element(str(ids[0]), g, "weight", hdr.codebook))
        out.append(_Element(str(ids[1]), h, "weight", hdr.codebook_dc))
    else:
        out.append(_Element(str(ids[0]), dims, "weight", hdr.codebook))
    return out


def _dc_dims(hdr, dims: list[int]) -> tuple[list[int], list[int]]:
    rows, rank = hdr.g_number_of_rows, hdr.decomposition_rank
    if not rows or not rank or prod(dims) % rows:
        raise NonConformingBitstreamError("inconsistent decomposition_rank / g_number_of_rows")
    return [rows, rank], [rank, prod(dims) // rows]


def _elements(unit: ParsedUnit, ctx: StreamContext) -> list[_Element]:
    hdr = unit.header
    dims = list(unit.dims)
    if not dims:
        raise NonConformingBitstreamError("an NDU with no tensor dimensions")
    if hdr.payload_type == PayloadType.BLOCK:
        return _block_elements(hdr, dims)
    name = str(hdr.topology_elem_ids[0])
    kind = "weight" if len(dims) > 1 else "unspecified"
    if hdr.compressed_parameter_types & CPT.DC:
        g, h = _dc_dims(hdr, dims)
        # as the parser read the header (ctx may already be past this unit)
        kind_gh = unit.decomposed_type or hdr.decomposed_type(ctx)
        dims = g if kind_gh == "G" else h
        kind = "weight"
    return [_Element(name, dims, kind, hdr.codebook)]


def _check_limits(elements: list[_Element], limits: DecodeLimits, total: list[int]) -> None:
    for e in elements:
        n = prod(e.dims)
        if n > limits.max_tensor_elements:
            raise ResourceLimitError(f"tensor {e.name!r} declares {n} elements, more than the "
                                     f"limit of {limits.max_tensor_elements}")
        total[0] += n
        if total[0] > limits.max_total_elements:
            raise ResourceLimitError(f"the stream declares more than {limits.max_total_elements} "
                                     "elements in total")
        if n and max(e.dims) >= 1 << 32:
            raise ResourceLimitError(f"tensor {e.name!r} has a dimension of 2^32 or more")


def _spec(e: _Element, unit: ParsedUnit, ctx: StreamContext, state: DecoderState | None,
          legacy: bool) -> TensorSpec:
    hdr = unit.header
    pt = hdr.payload_type
    rows = e.dims[0] if e.dims else 1
    cols = prod(e.dims[1:]) if len(e.dims) > 1 else 1
    profile = ctx.general_profile_idc
    cb = e.codebook if pt != PayloadType.INT else None
    qd = (ctx.lps.lps_qp_density if ctx.lps is not None and ctx.lps.lps_qp_density is not None
          else ctx.mps.mps_qp_density)
    spec = TensorSpec(
        rows=rows, cols=cols, scan_order=hdr.scan_order if len(e.dims) > 1 else 0,
        dq=bool(hdr.dq_flag) and pt != PayloadType.INT, has_qp=pt != PayloadType.INT,
        qp_density=qd if qd is not None else 2, profile=profile,
        parent_node_id_present=bool(hdr.parent_node_id_present_flag),
        cabac_unary_length=hdr.cabac_unary_length_minus1 + 1,
        codebook_size=cb.codebook_size if (cb is not None and profile == 1) else 0,
        codebook_zero_offset=cb.cb_zero_offset if (cb is not None and profile == 1) else 0,
        legacy_v03=legacy)
    if hdr.temporal_context_modeling_flag and profile == 1 and state is not None:
        spec.tca_base = _tca_base(e, hdr, state, rows * cols)
    if state is not None and e.name in state.hdsp_history:
        hist = state.hdsp_history[e.name]
        if hist.size == rows * cols:
            spec.hdsp_history = hist
    return spec


def _tca_base(e: _Element, hdr, state: DecoderState, size: int) -> np.ndarray:
    if hdr.parent_node_id_type == 1:   # parent identified by the SHA-256 of its payload
        node = state.nodes.get(bytes(hdr.parent_node_payload_sha256 or b""), {}).get(e.name)
        if node is None:
            raise NonConformingBitstreamError(
                f"{e.name!r} refers to a parent node this decoder has not seen (SHA-256 "
                f"{bytes(hdr.parent_node_payload_sha256 or b'').hex()[:16]}...)")
        base, depth = node
    else:
        base, depth = state.levels.get(e.name), state.depth.get(e.name)
    if base is None or base.size != size:
        raise NonConformingBitstreamError(
            f"temporal context modeling for {e.name!r} without a parent of the same size")
    if state.device_id is not None and hdr.device_id != state.device_id:
        raise NonConformingBitstreamError(f"device_id of {e.name!r} differs from its parent's")
    if e.name in state.parameter_id and hdr.parameter_id != state.parameter_id[e.name]:
        raise NonConformingBitstreamError(f"parameter_id of {e.name!r} differs from its parent's")
    if hdr.put_node_depth is not None and hdr.put_node_depth - 1 != depth:
        raise NonConformingBitstreamError(f"put_node_depth of {e.name!r} is not its parent's + 1")
    return base


def _check_entry_points(unit: ParsedUnit, specs: list[TensorSpec],
                        eps: list[tuple[int, list[EntryPoint]]]) -> None:
    """The entry points in the header must be where the payload puts the block rows."""
    coded = list(unit.header.cabac_entry_point_list)
    recorded = [(start, pts, s) for (start, pts), s in zip(eps, specs) if pts]
    if not recorded:
        return
    if sum(len(p) for _, p, _ in recorded) != len(coded):
        raise NonConformingBitstreamError(
            f"{len(coded)} entry points in the header, the payload has "
            f"{sum(len(p) for _, p, _ in recorded)} block-row starts")
    i = 0
    for start, pts, spec in recorded:
        prev = start
        for p in pts:
            c = coded[i]
            i += 1
            pos = prev + c.bit_offset_delta
            if (pos != p.bit_position or c.cabac_offset != p.cabac_offset
                    or (spec.dq and c.dq_state != p.dq_state)):
                raise NonConformingBitstreamError(
                    f"entry point {i - 1} does not match the payload (bit {pos} vs "
                    f"{p.bit_position})")
            prev = pos


def _reconstruct(e: _Element, k: np.ndarray, coding: TensorCoding, unit: ParsedUnit,
                 ctx: StreamContext, spec: TensorSpec) -> np.ndarray:
    pt = unit.header.payload_type
    if pt == PayloadType.INT:
        return k.reshape(e.dims)
    base_qp = ctx.lps.lps_quantization_parameter if ctx.lps is not None and \
        ctx.lps.lps_quantization_parameter is not None else ctx.mps.mps_quantization_parameter
    qp = coding.qp + (base_qp or 0)
    try:
        step = float(step_size(qp, spec.qp_density))
    except OverflowError:
        step = float("inf")
    if not 0.0 < step < float("inf"):
        raise NonConformingBitstreamError(f"qp {qp} gives no float32 step size for {e.name!r}")
    if e.codebook is not None:
        cb = e.codebook
        return dequantize_codebook(k, np.asarray(cb.codebook), cb.cb_zero_offset, qp,
                                   spec.qp_density).reshape(e.dims)
    return dequantize(k, qp, spec.qp_density).reshape(e.dims)


def _update_state(state: DecoderState, unit: ParsedUnit, ctx: StreamContext,
                  e: _Element, k: np.ndarray, digest: bytes) -> None:
    hdr = unit.header
    depth = hdr.put_node_depth if hdr.put_node_depth else state.depth.get(e.name, 0) + 1
    state.levels[e.name] = k
    state.depth[e.name] = depth
    state.nodes.setdefault(digest, {})[e.name] = (k, depth)
    while len(state.nodes) > state.max_nodes:
        del state.nodes[next(iter(state.nodes))]
    if hdr.parameter_id is not None:
        state.parameter_id[e.name] = hdr.parameter_id
    if hdr.device_id is not None and state.device_id is None:
        state.device_id = hdr.device_id
    if ctx.mps_parent_signalling_enabled_flag:
        hist = state.hdsp_history.get(e.name)
        if hist is None or hist.size != k.size:
            hist = np.zeros(k.size, dtype=np.uint8)
        hist[k != 0] = 1
        state.hdsp_history[e.name] = hist


def _assign_entry_points(unit: ParsedUnit, specs: list[TensorSpec], threads: int) -> None:
    """Hand each block-scanned tensor its coded entry points, for parallel block-row
    decoding of large tensors (the sequential decoder does not need them)."""
    coded = list(unit.header.cabac_entry_point_list)
    i = 0
    for spec in specs:
        scan = spec.scan_order if spec.rows > 1 and spec.cols > 1 else 0
        n = ((spec.rows + (4 << scan) - 1) // (4 << scan)) - 1 if scan else 0
        if n <= 0:
            continue
        if i + n > len(coded):
            return
        if spec.size >= _PARALLEL_ROWS_MIN:
            spec.entry_point_deltas = [(e.bit_offset_delta, e.cabac_offset, e.dq_state)
                                       for e in coded[i:i + n]]
            spec.threads = threads
        i += n


#: Tensors from this many elements on decode their block rows in parallel (threads > 1).
_PARALLEL_ROWS_MIN = 1 << 20


def _decode_ndu(data, unit: ParsedUnit, ctx: StreamContext, state: DecoderState | None,
                legacy: bool, threads: int = 1
                ) -> tuple[list[DecodedTensor], list[tuple[_Element, np.ndarray]]]:
    """Decode one NDU; ``state`` is only read here. Returns the tensors and the levels that
    update the decoder state (applied in stream order by the caller)."""
    hdr = unit.header
    pt = hdr.payload_type
    if pt == PayloadType.RAW_FLOAT:
        name = str(hdr.topology_elem_ids[0])
        arr = raw_float_tensor(data, unit)
        return [DecodedTensor(name, arr, unit.index, pt, "unspecified", None, False, 0, False,
                              None, unit.size)], []
    elements = _elements(unit, ctx)
    specs = [_spec(e, unit, ctx, state, legacy) for e in elements]
    if threads > 1 and hdr.cabac_entry_point_list:
        _assign_entry_points(unit, specs, threads)
    payload = memoryview(data)[unit.payload_start:unit.payload_end]
    levels, codings, eps, used = decode_payload(payload, specs)
    if used != len(payload):
        raise NonConformingBitstreamError(
            f"the CABAC payload ends after {used} of {len(payload)} bytes")
    _check_entry_points(unit, specs, eps)
    out = []
    for e, k, coding, spec in zip(elements, levels, codings, specs):
        arr = _reconstruct(e, k, coding, unit, ctx, spec)
        out.append(DecodedTensor(e.name, arr, unit.index, pt, e.kind,
                                 None if pt == PayloadType.INT else coding.qp, spec.dq,
                                 hdr.scan_order if len(e.dims) > 1 else 0,
                                 e.codebook is not None, coding, unit.size))
    if state is None:
        return out, []      # no history to update: let the levels go now
    digest = hashlib.sha256(payload).digest()
    return out, [(e, k, digest) for e, k in zip(elements, levels)]


def _located(exc: BitstreamError, unit: ParsedUnit, base: int = 0) -> BitstreamError:
    return exc.located(unit_index=unit.index, unit_type=unit.type_name,
                       offset=base + (exc.offset if exc.offset is not None else unit.offset))


def _wanted(unit: ParsedUnit, ctx: StreamContext, names: set[str] | None) -> bool:
    """Whether the NDU holds one of ``names``. The G and H NDUs of a decomposed weight go
    together (either name, or the weight's own, selects both: recomposing needs both)."""
    if names is None or unit.header.payload_type == PayloadType.RAW_FLOAT:
        return names is None or str(unit.header.topology_elem_ids[0]) in names
    if unit.header.compressed_parameter_types & CPT.DC:
        layer = layer_name(unit)
        if names & {layer, layer + "_G", layer + "_H"}:
            return True
    return any(e.name in names for e in _elements(unit, ctx))


def decode_units(data, *, state: DecoderState | None = None, legacy: bool | None = None,
                 limits: DecodeLimits | None = None, threads: int | None = None,
                 names: set[str] | None = None
                 ) -> Iterator[tuple[ParsedUnit, StreamContext, list[DecodedTensor]]]:
    """Parse and decode ``data`` (bytes, or any buffer such as an mmap) unit by unit.

    NDUs are decoded by ``threads`` workers (default: all cores; the native core releases the
    GIL) with a bounded number in flight, and yielded in stream order; the decoder ``state``
    is updated in stream order, so the result does not depend on the thread count. ``names``
    restricts decoding to the NDUs holding those tensors (random access); the others are
    yielded with no tensors. ``legacy`` selects the NNCodec 0.3.x payload flavour; by default
    it is used for profile-0 streams and the 2.x flavour for profile 1.
    """
    ctx = StreamContext(limits=limits)
    yield from _decode_source(_flatten(iter_units(data, ctx), data), ctx, state, legacy, limits,
                              threads, names)


def decode_file_units(f: BinaryIO, *, state: DecoderState | None = None,
                      legacy: bool | None = None, limits: DecodeLimits | None = None,
                      threads: int | None = None, names: set[str] | None = None
                      ) -> Iterator[tuple[ParsedUnit, StreamContext, list[DecodedTensor]]]:
    """Like :func:`decode_units`, reading units one at a time from a binary file (memory
    holds only the units in flight and their tensors)."""
    ctx = StreamContext(limits=limits)
    units = ((child, data, base) for unit, data, base in iter_file_units(f, ctx)
             for child in _expanded(unit))
    yield from _decode_source(units, ctx, state, legacy, limits, threads, names)


def _expanded(unit: ParsedUnit) -> list[ParsedUnit]:
    """An NNR_AGG unit stands for the units it aggregates (decoded in place, in order)."""
    if unit.unit_type == NnrUnitType.AGG:
        return [unit] + list(unit.children)
    return [unit]


def _flatten(units, data):
    for unit in units:
        for child in _expanded(unit):
            yield child, data, 0


def _decode_source(source, ctx: StreamContext, state, legacy, limits, threads, names):
    limits = limits or DecodeLimits()
    workers = threads or os.cpu_count() or 1
    total = [0]

    def finish(item, future):
        unit, snap, base = item
        if future is None:
            return unit, snap, []
        try:
            tensors, updates = future.result()
        except BitstreamError as exc:
            raise _located(exc, unit, base) from exc
        if state is not None:
            for element, k, digest in updates:
                _update_state(state, unit, snap, element, k, digest)
        return unit, snap, tensors

    # Units are yielded in stream order (InOrder: up to 2 x workers decode ahead, more while a
    # large head runs). On one thread each unit is decoded at submit, so none is held back.
    pending = InOrder(2 * workers if workers > 1 else 0)
    with ThreadPoolExecutor(workers) if workers > 1 else _Inline() as pool:
        for unit, data, base in source:
            snap = copy.copy(ctx)
            future = None
            n = 0
            if unit.unit_type == NnrUnitType.NDU and _wanted(unit, snap, names):
                use_legacy = (snap.general_profile_idc == 0) if legacy is None else legacy
                try:
                    if unit.header.payload_type != PayloadType.RAW_FLOAT:
                        elements = _elements(unit, snap)
                        _check_limits(elements, limits, total)
                        n = sum(prod(e.dims) for e in elements)
                except BitstreamError as exc:
                    raise _located(exc, unit, base) from exc
                # TCA and HDSP read the state: wait for earlier NDUs when the stream uses them
                if state is not None and unit.header.parent_node_id_present_flag:
                    for done in pending.drain():
                        yield finish(*done)
                future = pool.submit(_decode_ndu, data, unit, snap, state, use_legacy, workers)
            for done in pending.push((unit, snap, base), future, n):
                yield finish(*done)
        for done in pending.drain():
            yield finish(*done)


class _Inline:
    """A stand-in executor that runs the work at once (one thread)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        try:
            return _Done(fn(*args), None)
        except BaseException as exc:  # re-raised in stream order by _Done.result
            return _Done(None, exc)


class _Done:
    def __init__(self, value, exc):
        self.value, self.exc = value, exc

    def done(self) -> bool:
        return True

    def result(self):
        if self.exc is not None:
            raise self.exc
        return self.value


def _dc_weight_name(g_name: str) -> str:
    return g_name[:-2] if g_name.endswith("_G") else g_name


def layer_name(unit: ParsedUnit) -> str:
    """The layer an NDU codes: its first tensor's name (a BLOCK unit's weight), for a
    decomposed weight (DC) the weight's name (``<w>_G`` / ``<w>_H`` without the suffix). An
    NNR_LPS unit describes the layer of the NDU that follows it."""
    ids = unit.header.topology_elem_ids
    name = str(ids[0]) if ids else ""
    if unit.header.compressed_parameter_types & CPT.DC and name.endswith(("_G", "_H")):
        name = name[:-2]
    return name


def recomposed_units(units: Iterator[tuple[ParsedUnit, StreamContext, list[DecodedTensor]]]
                     ) -> Iterator[tuple[ParsedUnit, list[tuple[str, np.ndarray]]]]:
    """``(unit, [(name, array), ...])`` for each unit of :func:`decode_units`, with every
    decomposed weight (DC: ``<w>_G`` and ``<w>_H``, in one BLOCK NDU or in two consecutive
    NDUs) recomposed as ``W = (G @ H).reshape(tensor_dimensions)`` (float64 product, float32
    result) under the weight's name (``<w>_G`` without the suffix): the G NDU of a separate
    pair yields nothing, its H NDU yields W."""
    from nnr.reduction.lowrank import recompose
    return paired_decomposed(
        ((unit, [(t.name, t.array) for t in tensors]) for unit, _, tensors in units),
        lambda unit, g, h: (_dc_weight_name(g[0]), recompose(g[1], h[1], list(unit.dims))))


def paired_decomposed(items: Iterator[tuple[ParsedUnit, list[tuple[str, Any]]]],
                      combine: Callable[[ParsedUnit, tuple[str, Any], tuple[str, Any]],
                                        tuple[str, Any]]
                      ) -> Iterator[tuple[ParsedUnit, list[tuple[str, Any]]]]:
    """``(unit, entries)`` with the entries ``(name, value)`` of every decomposed weight's G and
    H (the last two of a BLOCK NDU, or those of two consecutive DC NDUs) replaced by
    ``combine(unit, g, h)``, the unit that holds H: the G NDU of a separate pair yields none."""
    pending: tuple[str, Any] | None = None
    for unit, entries in items:
        hdr = unit.header
        if (unit.unit_type != NnrUnitType.NDU or not entries
                or not hdr.compressed_parameter_types & CPT.DC
                or hdr.payload_type == PayloadType.RAW_FLOAT):
            yield unit, entries
        elif hdr.payload_type == PayloadType.BLOCK:
            yield unit, entries[:-2] + [combine(unit, entries[-2], entries[-1])]
        elif pending is None:
            pending = entries[0]
            yield unit, []
        else:
            g, pending = pending, None
            yield unit, [combine(unit, g, entries[0])]
    if pending is not None:
        raise NonConformingBitstreamError(f"decomposed tensor {pending[0]!r} has no H NDU")


def decode_recomposed(data, **options) -> dict[str, np.ndarray]:
    """Like :func:`nnr.decode`, with every decomposed weight (DC: ``<w>_G`` and ``<w>_H``,
    in one BLOCK NDU or in two consecutive NDUs) recomposed as
    ``W = (G @ H).reshape(tensor_dimensions)`` (float64 product, float32 result) and returned
    under the weight's name (``<w>_G`` without the suffix) in G's place. ``options`` are
    those of :func:`decode_units`."""
    out: dict[str, np.ndarray] = {}
    for _, named in recomposed_units(decode_units(data, **options)):
        out.update(named)
    return out
