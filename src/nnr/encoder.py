"""Encoding of named tensors into NNR units (one NDU per tensor)."""
from __future__ import annotations

import dataclasses
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import prod
from typing import Any, Iterator, Mapping

import numpy as np

from nnr._inorder import InOrder
from nnr.bitstream.enums import CompressedParameterTypes as CPT
from nnr.bitstream.enums import NnrUnitType, PayloadType, QuantizationMethodFlags
from nnr.bitstream.stream import StreamContext, StreamWriter, raw_float_payload, write_unit
from nnr.bitstream.units.compressed_data import (CabacEntryPoint, CompressedDataUnitHeader,
                                                 IntegerCodebook)
from nnr.bitstream.units.layer_parameter_set import LayerParameterSetHeader
from nnr.bitstream.units.model_parameter_set import ModelParameterSet
from nnr.bitstream.units.start import StartUnitHeader
from nnr.bitstream.units.topology import TopologyPayload, TopologyUnitHeader
from nnr.config import EncodeConfig
from nnr.entropy import TensorCoding, TensorSpec, decode_payload, encode_payload
from nnr.errors import ConfigError
from nnr.quantization import lowbit, make_codebook, qp_range, quantize

__all__ = ["EncoderState", "Topology", "encode_tensors", "iter_units", "prepare_tensor"]

_INT_KINDS = "iub"
_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


@dataclass
class EncoderState:
    """Encoder side of an incremental sequence (mirrors :class:`nnr.decoder.DecoderState`).

    Per tensor name: the integer levels of the most recent coded version (parent levels for
    temporal context adaptation), its ``put_node_depth`` and ``parameter_id``, and the HDSP
    history (positions nonzero in an earlier update stream).
    """

    levels: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)
    parameter_id: dict[str, int] = field(default_factory=dict)
    hdsp_history: dict[str, np.ndarray] = field(default_factory=dict)
    #: Update-tree nodes by SHA-256 of their NDU payload: {digest: {name: (levels, depth)}}.
    nodes: dict[bytes, dict[str, tuple[np.ndarray, int]]] = field(default_factory=dict)
    #: The digest of the most recent node of each tensor.
    latest: dict[str, bytes] = field(default_factory=dict)
    max_nodes: int = 256

    def node_of(self, name: str) -> bytes | None:
        """SHA-256 of the payload of the most recent NDU that coded ``name``: the id that a
        later update names as its parent (``parent_id="sha256"``, ``parent=...``)."""
        return self.latest.get(name)

    def heads(self) -> dict[str, bytes]:
        """The current node of every tensor: pass it later as ``parent=`` to code an update
        against this version of the model (asynchronous / branching updates)."""
        return dict(self.latest)


@dataclass(frozen=True)
class _Node:
    """Where an NDU sits in the parameter update tree, and what it may use of its parent."""

    parameter_id: int = 0
    put_node_depth: int = 0
    parent: bool = False          # parent_node_id_present_flag (a differential update)
    tca: bool = False             # temporal_context_modeling_flag
    state: EncoderState | None = None
    hdsp: bool = False
    parent_hash: bytes | None = None   # SHA-256 parent id (parent_node_id_type 1)
    bases: Mapping[str, np.ndarray] | None = None   # the parent levels per tensor

    def base(self, name: str) -> np.ndarray | None:
        return self.bases.get(name) if self.tca and self.bases is not None else None

    def history(self, name: str) -> np.ndarray | None:
        if not self.hdsp or self.state is None:
            return None
        return self.state.hdsp_history.get(name)


def prepare_tensor(name: str, value: Any) -> np.ndarray:
    """Validate one input tensor: a finite float or an integer array (0-d becomes (1,))."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ConfigError(f"tensor names must be non-empty strings without NUL, got {name!r}")
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int32)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < -(1 << 31) or arr.max() > (1 << 31) - 1):
            raise ConfigError(f"tensor {name!r}: integer values outside the int32 range")
        arr = arr.astype(np.int32)
    elif arr.dtype.kind == "f":
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise ConfigError(f"tensor {name!r} has NaN or infinite values (or values beyond "
                              "the float32 range)")
    else:
        raise ConfigError(f"tensor {name!r}: unsupported dtype {arr.dtype} (float or integer "
                          "arrays only)")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if any(d >= 1 << 31 for d in arr.shape):
        raise ConfigError(f"tensor {name!r}: dimension too large")
    return np.ascontiguousarray(arr)


@dataclass
class _Coded:
    header: CompressedDataUnitHeader
    payload: bytes


def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    return shape[0], (prod(shape[1:]) if len(shape) > 1 else 1)


def _spec(shape, cfg: EncodeConfig, *, scan: int, dq: bool, has_qp: bool,
          codebook: IntegerCodebook | None = None, parent: bool = False,
          tca_base: np.ndarray | None = None, history: np.ndarray | None = None) -> TensorSpec:
    rows, cols = _rows_cols(shape)
    return TensorSpec(rows=rows, cols=cols, scan_order=scan, dq=dq, has_qp=has_qp,
                      parent_node_id_present=parent, tca_base=tca_base, hdsp_history=history,
                      qp_density=cfg.qp_density, profile=cfg.profile,
                      cabac_unary_length=cfg.cabac_unary_length_minus1 + 1,
                      codebook_size=codebook.codebook_size if codebook and cfg.profile == 1 else 0,
                      codebook_zero_offset=codebook.cb_zero_offset if codebook and cfg.profile == 1
                      else 0,
                      legacy_v03=cfg.profile == 0, init_estimate_limit=cfg.init_estimate_limit,
                      init_estimate=cfg.init_estimate)


def _entry_points(payload: bytes, specs: list[TensorSpec]) -> list[CabacEntryPoint]:
    """Entry points of the block rows of every tensor, found by decoding the finished payload
    (each tensor's first delta counts from its own level-data start)."""
    _, _, eps, _ = decode_payload(payload, specs)
    out = []
    for (start, points), spec in zip(eps, specs):
        prev = start
        for p in points:
            out.append(CabacEntryPoint(cabac_offset=p.cabac_offset,
                                       dq_state=p.dq_state if spec.dq else 0,
                                       bit_offset_delta=p.bit_position - prev))
            prev = p.bit_position
    return out


def _scan_for(shape: tuple[int, ...], cfg: EncodeConfig) -> int:
    rows, cols = _rows_cols(shape)
    return cfg.scan_order if len(shape) > 1 and rows > 1 and cols > 1 else 0


def _row_skip(k: np.ndarray, shape, cfg: EncodeConfig, scan: int, dq: bool) -> np.ndarray | None:
    rows, cols = _rows_cols(shape)
    if not cfg.row_skip or cfg.profile != 1 or rows < 2 or cols < 2:
        return None
    if dq and scan > 0:
        # NNCodec's decoder advances the DQ state by a whole row at a skipped row segment,
        # which a block scan does not match (docs/deviations.md): no row skipping here.
        return None
    flags = ~k.reshape(rows, cols).any(axis=1)
    return flags.astype(np.uint8) if flags.any() else None


def _base_header(name: str, shape, node: _Node, cfg: EncodeConfig, pt: PayloadType
                 ) -> CompressedDataUnitHeader:
    hdr = CompressedDataUnitHeader(nnr_compressed_data_unit_payload_type=int(pt),
                                   topology_elem_id=name, tensor_dimensions=list(shape),
                                   cabac_unary_length_minus1=cfg.cabac_unary_length_minus1)
    if cfg.profile == 1:
        hdr.node_id_present_flag = 1
        hdr.device_id = 0
        hdr.parameter_id = node.parameter_id
        hdr.put_node_depth = node.put_node_depth
        if node.parent:
            hdr.parent_node_id_present_flag = 1
            if node.parent_hash is not None:
                hdr.parent_node_id_type = 1      # the SHA-256 of the parent NDU's payload
                hdr.parent_node_payload_sha256 = node.parent_hash
            else:
                hdr.parent_node_id_type = 0      # ICNN_NDU_ID: same parameter_id, depth - 1
                hdr.parent_device_id = 0
            hdr.temporal_context_modeling_flag = int(node.tca)
    return hdr


@dataclass
class _Part:
    """One tensor of an NDU payload, ready for the entropy coder."""

    k: np.ndarray
    shape: tuple[int, ...]
    qp: int
    codebook: IntegerCodebook | None = None
    name: str = ""


def _code_parts(parts: list[_Part], cfg: EncodeConfig, hdr: CompressedDataUnitHeader, *,
                dq: bool, has_qp: bool, node: _Node = _Node()) -> _Coded:
    """Code the tensors of one NDU (payload order) and complete its header. With HDSP
    allowed and a history for every tensor, the NDU is coded with and without it and the
    shorter payload is kept (ties: without)."""
    specs, codings = [], []
    for part in parts:
        scan = _scan_for(part.shape, cfg)
        specs.append(_spec(part.shape, cfg, scan=scan, dq=dq, has_qp=has_qp,
                           codebook=part.codebook, parent=node.parent,
                           tca_base=node.base(part.name), history=node.history(part.name)))
        codings.append(TensorCoding(qp=part.qp, row_skip=_row_skip(part.k, part.shape, cfg,
                                                                   scan, dq)))
    levels = [p.k for p in parts]
    payload, _ = encode_payload(levels, specs, codings, cfg.param_opt)
    if node.parent and all(s.hdsp_history is not None for s in specs):
        for c in codings:
            c.hdsp = True
        with_hdsp, _ = encode_payload(levels, specs, codings, cfg.param_opt)
        if len(with_hdsp) < len(payload):
            payload = with_hdsp
    weight = parts[-1]
    hdr.dq_flag = int(dq)
    hdr.codebook = weight.codebook
    if len(weight.shape) > 1:
        hdr.scan_order = _scan_for(weight.shape, cfg)
        if hdr.scan_order and any(s.rows > (4 << s.scan_order) for s in specs):
            hdr.cabac_entry_point_list = _entry_points(payload, specs)
    return _Coded(hdr, payload)


def _code_levels(k: np.ndarray, shape, cfg: EncodeConfig, hdr: CompressedDataUnitHeader, *,
                 qp: int, dq: bool, has_qp: bool, codebook: IntegerCodebook | None = None,
                 node: _Node = _Node()) -> _Coded:
    name = str(hdr.topology_elem_id)
    return _code_parts([_Part(k, shape, qp, codebook, name)], cfg, hdr, dq=dq, has_qp=has_qp,
                       node=node)


def _codebook_levels(w: np.ndarray, shape, cfg: EncodeConfig, qp: int
                     ) -> tuple[np.ndarray, IntegerCodebook, int]:
    """Codebook of the uniform levels (DQ is never combined with a codebook: with dq
    requested the step is halved instead, as NNCodec does)."""
    cb_qp = qp - (1 << cfg.qp_density) if cfg.dq else qp
    lo, _ = qp_range(cfg.qp_density)
    cb_qp = max(cb_qp, lo)
    rows, cols = _rows_cols(shape)
    k = quantize(w, rows, cols, qp=cb_qp, qp_density=cfg.qp_density, dq=False,
                 lambda_scale=cfg.lambda_scale,
                 cabac_unary_length=cfg.cabac_unary_length_minus1 + 1)
    k = _clip_bit_depth(k, w, cfg)
    values, index = make_codebook(k)
    zero = int(np.argmin(np.abs(values)))
    codebook = IntegerCodebook(codebook=[int(v) for v in values], cb_zero_offset=zero,
                               codebook_egk=_best_egk(values, zero))
    return (index - zero).astype(np.int32), codebook, cb_qp


def _best_egk(values: np.ndarray, zero: int) -> int:
    deltas = np.diff(values) - 1
    best, best_bits = 0, None
    for egk in range(16):
        bits = int(sum(_ue_bits(int(d), egk) for d in deltas))
        if best_bits is None or bits < best_bits:
            best, best_bits = egk, bits
    return best


def _ue_bits(x: int, k: int) -> int:
    n = 0
    while x >= (1 << k):
        x -= 1 << k
        k += 1
        n += 1
    return n + 1 + k


def _encode_one(name: str, arr: np.ndarray, node: _Node, cfg: EncodeConfig
                ) -> tuple[_Coded, dict[str, np.ndarray]]:
    shape = arr.shape
    rows, cols = _rows_cols(shape)
    if arr.dtype == np.int32:
        hdr = _base_header(name, shape, node, cfg, PayloadType.INT)
        k = arr.ravel()
        return _code_levels(k, shape, cfg, hdr, qp=0, dq=False, has_qp=False, node=node), {name: k}
    if cfg.is_raw_float(name):
        return _Coded(_base_header(name, shape, node, cfg, PayloadType.RAW_FLOAT),
                      raw_float_payload(arr)), {}
    cfg = _lowbit_cfg(cfg.for_tensor(name), arr)
    qp = _tensor_qp(name, arr, cfg)
    candidates = []
    if cfg.codebook in ("off", "auto") or arr.size == 0:   # no codebook for no values
        k, qp_u = _quantize_with_fallback(arr, rows, cols, qp, cfg, name)
        hdr = _base_header(name, shape, node, cfg, PayloadType.FLOAT)
        candidates.append((_code_levels(k, shape, cfg, hdr, qp=qp_u, dq=cfg.dq, has_qp=True,
                                        node=node), k))
    if cfg.codebook in ("on", "auto") and arr.size:
        k, codebook, cb_qp = _codebook_levels(arr, shape, cfg, qp)
        hdr = _base_header(name, shape, node, cfg, PayloadType.FLOAT)
        candidates.append((_code_levels(k, shape, cfg, hdr, qp=cb_qp, dq=False, has_qp=True,
                                        codebook=codebook, node=node), k))
    # (one candidate: no unit to write for its size)
    coded, k = candidates[0] if len(candidates) == 1 else min(candidates,
                                                              key=lambda c: _coded_size(c[0]))
    return coded, {name: k}


def _coded_size(c: _Coded) -> int:
    return len(write_unit(NnrUnitType.NDU, c.header, c.payload, ctx=_CTX_SIZE))


_CTX_SIZE = StreamContext(general_profile_idc=1, mps_parent_signalling_enabled_flag=1)


def _quantize_with_fallback(arr: np.ndarray, rows: int, cols: int, qp: int, cfg: EncodeConfig,
                            name: str = "") -> tuple[np.ndarray, int]:
    """Quantize; if the levels would overflow 32 bits, raise qp until they fit. Weights with
    ``cfg.stochastic`` get stochastic binary / ternary levels (qp from their scale; ``name``
    picks the random stream); with ``cfg.bit_depth`` the levels are clipped to its range."""
    if cfg.stochastic and arr.ndim > 1:
        return lowbit.stochastic_levels(arr, cfg.stochastic, cfg.qp_density,
                                        lowbit.tensor_rng(cfg.seed, name))
    _, hi = qp_range(cfg.qp_density)
    scan = _scan_for(arr.shape, cfg)
    while True:
        try:
            k = quantize(arr, rows, cols, qp=qp, qp_density=cfg.qp_density, dq=cfg.dq,
                         scan_order=scan, lambda_scale=cfg.lambda_scale,
                         cabac_unary_length=cfg.cabac_unary_length_minus1 + 1)
            return _clip_bit_depth(k, arr, cfg), qp
        except ConfigError:
            if cfg.bit_depth is not None and qp < (fallback := lowbit.nncodec_overflow_qp(
                    arr, cfg.qp_density)):
                qp = fallback        # NNCodec's rule, so that high bit depths match it
                continue
            if qp >= hi:
                raise
            qp = min(hi, qp + (1 << cfg.qp_density))


def _tensor_qp(name: str, arr: np.ndarray, cfg: EncodeConfig) -> int:
    """The qp a float tensor is quantized with: NNCodec's integer-aligned qp with
    ``cfg.bit_depth``, else ``qp_per_tensor`` / ``qp`` / ``nonweight_qp``."""
    if cfg.bit_depth is not None:
        return lowbit.bit_depth_qp(arr, cfg.bit_depth, cfg.qp_density, arr.ndim > 1)
    return cfg.qp_for(name, arr.ndim)


def _clip_bit_depth(k: np.ndarray, arr: np.ndarray, cfg: EncodeConfig) -> np.ndarray:
    """Levels clipped to the ``cfg.bit_depth`` range of the tensor (as NNCodec does after
    quantizing)."""
    if cfg.bit_depth is None:
        return k
    lo, hi = lowbit.bit_depth_range(arr, cfg.bit_depth, arr.ndim > 1)
    return np.clip(k, lo, hi).astype(np.int32, copy=False)


def _lowbit_cfg(cfg: EncodeConfig, arr: np.ndarray) -> EncodeConfig:
    """The config of an NDU whose (weight) tensor ``arr`` is quantized stochastically or to a
    bit depth: without DQ. Stochastic levels are no trellis path, and clipping DQ levels to a
    bit depth would break the DQ state path (NNCodec does that; nnr codes such a tensor as
    NNCodec does with ``use_dq=False``). Any other NDU keeps ``cfg``."""
    if cfg.dq and (cfg.bit_depth is not None or (cfg.stochastic and arr.ndim > 1)):
        return dataclasses.replace(cfg, dq=False)
    return cfg


@dataclass(frozen=True)
class Topology:
    """What an NNR_TPL unit carries: ``storage_format`` (``TopologyStorageFormat``: 0 plain
    tensors, 1 NNEF, 2 ONNX, 3 PyTorch, 4 TensorFlow), ``compression_format`` (0 raw,
    1 deflate) and the ``data`` bytes in that format."""

    storage_format: int = 0
    data: bytes = b"\0"
    compression_format: int = 0


def _stream_writer(cfg: EncodeConfig, topology: Topology | None) -> StreamWriter:
    topology = topology or Topology()
    sw = StreamWriter()
    sw.add(NnrUnitType.STR, StartUnitHeader(general_profile_idc=cfg.profile))
    mps = ModelParameterSet(
        topology_carriage_flag=1, mps_quantization_method_flags=int(QuantizationMethodFlags.QSU),
        mps_qp_density=cfg.qp_density, mps_quantization_parameter=0,
        mps_parent_signalling_enabled_flag=int(cfg.differences and cfg.profile == 1))
    if cfg.performance_maps is not None:
        cfg.performance_maps.apply(mps, cfg.profile)
    sw.add(NnrUnitType.MPS, None, mps)
    sw.add(NnrUnitType.TPL, TopologyUnitHeader(topology.storage_format,
                                               topology.compression_format),
           TopologyPayload(topology_data=bytes(topology.data)))
    return sw


#: Payload order of the tensors of a BLOCK NDU besides the weight (which comes last), and
#: header order of their names (after the weight).
_BLOCK_PAYLOAD_ORDER = ("weight.ls", "bias", "bn.beta", "bn.gamma", "bn.mean", "bn.var")
_BLOCK_HEADER_ORDER = ("weight.ls", "bn.beta", "bn.gamma", "bn.mean", "bn.var", "bias")


def _member_parts(members: Mapping[str, str], arrays: Mapping[str, np.ndarray],
                  cfg: EncodeConfig) -> list[_Part]:
    """The 1-D tensors of a BLOCK NDU (local scaling, bias, batch-norm), quantized, in payload
    order; the weight (or G and H) follows them."""
    parts = []
    for role in _BLOCK_PAYLOAD_ORDER:
        if role in members:
            name = members[role]
            arr = arrays[name]
            k, qp = _quantize_with_fallback(arr, arr.shape[0], 1, _tensor_qp(name, arr, cfg),
                                            cfg, name)
            parts.append(_Part(k, arr.shape, qp, name=name))
    return parts


def _encode_block(weight: str, members: Mapping[str, str], arrays: Mapping[str, np.ndarray],
                  node: _Node, cfg: EncodeConfig) -> tuple[_Coded, dict[str, np.ndarray]]:
    w = arrays[weight]
    cfg = _lowbit_cfg(cfg, w)
    parts = _member_parts(members, arrays, cfg)
    rows, cols = _rows_cols(w.shape)
    k, qp = _quantize_with_fallback(w, rows, cols, _tensor_qp(weight, w, cfg), cfg, weight)
    parts.append(_Part(k, w.shape, qp, name=weight))
    cpt = (CPT.LS if "weight.ls" in members else 0) | (CPT.BI if "bias" in members else 0) \
        | (CPT.BN if "bn.beta" in members else 0)
    hdr = _base_header(weight, w.shape, node, cfg, PayloadType.BLOCK)
    hdr.topology_elem_id = None
    hdr.topology_elem_id_list = [weight] + [members[r] for r in _BLOCK_HEADER_ORDER
                                            if r in members]
    hdr.compressed_parameter_types = int(cpt)
    coded = _code_parts(parts, cfg, hdr, dq=cfg.dq, has_qp=True, node=node)
    return coded, {p.name: p.k for p in parts}


def _check_blocks(cfg: EncodeConfig, arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """Validate ``cfg.blocks``; returns member name -> weight name."""
    owner: dict[str, str] = {}
    for weight, members in (cfg.blocks or {}).items():
        if weight not in arrays:
            raise ConfigError(f"block weight {weight!r} is not among the tensors")
        w = arrays[weight]
        if w.dtype != np.float32:
            raise ConfigError(f"block weight {weight!r} must be a float tensor")
        for role, name in members.items():
            arr = arrays.get(name)
            if arr is None:
                raise ConfigError(f"block of {weight!r}: {role} tensor {name!r} is missing")
            if arr.dtype != np.float32 or arr.shape != (w.shape[0],):
                raise ConfigError(f"block of {weight!r}: {role} tensor {name!r} must be float "
                                  f"with shape ({w.shape[0]},), got {arr.dtype} {arr.shape}")
            if name in owner or name in (cfg.blocks or {}):
                raise ConfigError(f"tensor {name!r} belongs to more than one block")
            owner[name] = weight
    return owner


def _nodes(names: list[str], cfg: EncodeConfig, state: EncoderState | None,
           owner: Mapping[str, str]) -> dict[str, _Node]:
    """The update-tree node of each NDU (keyed by its first tensor name)."""
    nodes = {}
    for index, name in enumerate(names):
        if name in owner:
            continue
        if state is None:
            nodes[name] = _Node(parameter_id=index)
            continue
        members = [name] + list(((cfg.blocks or {}).get(name) or {}).values())
        parent_hash, bases, depth = None, dict(state.levels), state.depth.get(name, 0)
        if cfg.differences and cfg.parent_id == "sha256":
            given = cfg.parent.get(name) if isinstance(cfg.parent, Mapping) else cfg.parent
            parent_hash = given if given is not None else state.latest.get(name)
            node = state.nodes.get(parent_hash or b"", {})
            if parent_hash is None or name not in node:
                raise ConfigError(f"no parent node for {name!r}: code a base first, or pass "
                                  "parent= EncoderState.heads() of the version to update")
            bases = {m: node[m][0] for m in members if m in node}
            depth = node[name][1]
        tca = cfg.tca and cfg.differences and all(m in bases for m in members)
        nodes[name] = _Node(parameter_id=state.parameter_id.get(name, index),
                            put_node_depth=depth + 1, parent=cfg.differences, tca=tca,
                            state=state, hdsp=cfg.hdsp and cfg.differences,
                            parent_hash=parent_hash, bases=bases)
    return nodes


def _fit(node: _Node, arrays: Mapping[str, np.ndarray], names: list[str]) -> _Node:
    """TCA needs a parent of the same size for every tensor of the NDU (a layer whose shape
    changed, e.g. a new classifier head, is coded without it); HDSP histories likewise."""
    if node.state is None:
        return node
    sizes = {n: arrays[n].size for n in names}
    bases = node.bases or {}
    tca = node.tca and all(n in bases and bases[n].size == sizes[n] for n in names)
    hdsp = node.hdsp and all(n in node.state.hdsp_history
                             and node.state.hdsp_history[n].size == sizes[n] for n in names)
    return dataclasses.replace(node, tca=tca, hdsp=hdsp)


def _update_state(state: EncoderState, cfg: EncodeConfig, node: _Node,
                  levels: Mapping[str, np.ndarray], payload: bytes) -> None:
    digest = hashlib.sha256(payload).digest()
    record = state.nodes.setdefault(digest, {})
    for name, k in levels.items():
        k = np.ascontiguousarray(k, dtype=np.int32).ravel()
        state.levels[name] = k
        state.depth[name] = node.put_node_depth
        state.parameter_id.setdefault(name, node.parameter_id)
        record[name] = (k, node.put_node_depth)
        state.latest[name] = digest
        if cfg.differences and cfg.profile == 1:
            hist = state.hdsp_history.get(name)
            if hist is None or hist.size != k.size:
                hist = np.zeros(k.size, dtype=np.uint8)
            hist[k != 0] = 1
            state.hdsp_history[name] = hist
    while len(state.nodes) > state.max_nodes:
        del state.nodes[next(iter(state.nodes))]


def _check_low_rank(cfg: EncodeConfig, arrays: Mapping[str, np.ndarray],
                    state: EncoderState | None) -> None:
    """Decomposition (DC) is for plain models: named weights must exist, be float with two
    or more dimensions, and leave the names ``<w>_G`` / ``<w>_H`` free."""
    if state is not None:
        raise ConfigError("low_rank (decomposition) cannot be used in an incremental sequence")
    names = list(cfg.low_rank) if isinstance(cfg.low_rank, Mapping) else []
    present = set(iter(arrays))         # names only: a lazy source stays unread
    for name in names:
        if name not in present:
            raise ConfigError(f"low_rank: no tensor named {name!r}")
    for name in names or present:
        if name + "_G" in present or name + "_H" in present:
            raise ConfigError(f"low_rank: {name!r} cannot be decomposed, a tensor "
                              f"{name + '_G'!r} or {name + '_H'!r} exists")
    for name in names:
        arr = arrays[name]
        if arr.dtype != np.float32 or arr.ndim < 2:
            raise ConfigError(f"low_rank: {name!r} must be a float tensor with two or more "
                              "dimensions")


def _dc_header(hdr: CompressedDataUnitHeader, lr: Any) -> None:
    """DC signalling: the DC bit, the rank, G's rows and the weight's dimensions."""
    hdr.compressed_parameter_types = int(hdr.compressed_parameter_types | CPT.DC)
    hdr.decomposition_rank = lr.rank
    hdr.g_number_of_rows = int(lr.g.shape[0])
    hdr.tensor_dimensions = list(lr.shape)


def _dc_config(cfg: EncodeConfig, weight: str, lr: Any, block: bool) -> EncodeConfig:
    """G and H take the weight's qp (or their own from qp_per_tensor). scan_order is 0 when G
    or H is a single row or column (the NDU's scan order applies to both), and for separate
    G / H NDUs when their block-row counts differ: NNCodec 2.1.3 parses the entry points of
    both NDUs with H's count (its G/H flag is set after the header is read)."""
    qps = dict(cfg.qp_per_tensor or {})
    qp = cfg.qp_for(weight, len(lr.shape))
    for part in (weight + "_G", weight + "_H"):
        qps.setdefault(part, qp)
    scan = cfg.scan_order
    shapes = (lr.g.shape, lr.h.shape)
    if any(r < 2 or c < 2 for r, c in shapes):
        scan = 0
    elif not block and scan:
        shift = 2 + scan
        if ((shapes[0][0] + (1 << shift) - 1) >> shift) != ((shapes[1][0] + (1 << shift) - 1)
                                                             >> shift):
            scan = 0
    return dataclasses.replace(cfg, qp_per_tensor=qps, scan_order=scan)


def _encode_decomposed(weight: str, members: Mapping[str, str],
                       arrays: Mapping[str, np.ndarray], node: _Node, cfg: EncodeConfig,
                       tol: Any) -> tuple[list[_Coded], dict[str, np.ndarray]] | None:
    """Code ``weight`` as its low-rank factors G, H if that saves parameters (else None):
    two NDUs ``<w>_G`` then ``<w>_H``, or G and H inside the weight's BLOCK unit. ``tol``
    may be the factors themselves (a LowRank), coded as they are."""
    from nnr.reduction.lowrank import LowRank, low_rank
    arr = arrays[weight]
    if isinstance(tol, LowRank):
        if tuple(tol.shape) != tuple(arr.shape):
            raise ConfigError(f"low_rank: the factors of {weight!r} are for shape "
                              f"{tuple(tol.shape)}, the tensor is {arr.shape}")
        lr = LowRank(np.ascontiguousarray(tol.g, dtype=np.float32),
                     np.ascontiguousarray(tol.h, dtype=np.float32), tuple(arr.shape), tol.error)
        return _encode_lowrank(weight, members, arrays, node, cfg, lr)
    if arr.dtype != np.float32 or arr.ndim < 2:
        return None
    lr = low_rank(arr, tol)
    if lr is None:
        return None
    return _encode_lowrank(weight, members, arrays, node, cfg, lr)


def _encode_lowrank(weight: str, members: Mapping[str, str], arrays: Mapping[str, np.ndarray],
                    node: _Node, cfg: EncodeConfig, lr: Any
                    ) -> tuple[list[_Coded], dict[str, np.ndarray]]:
    dcfg = _dc_config(cfg, weight, lr, bool(members))
    if members:
        return _encode_dc_block(weight, members, arrays, node, dcfg, lr)
    coded, levels = [], {}
    for name, part in ((weight + "_G", lr.g), (weight + "_H", lr.h)):
        c, lv = _encode_one(name, np.ascontiguousarray(part), node, dcfg)
        _dc_header(c.header, lr)
        coded.append(c)
        levels.update(lv)
    return coded, levels


def _encode_dc_block(weight: str, members: Mapping[str, str], arrays: Mapping[str, np.ndarray],
                     node: _Node, cfg: EncodeConfig, lr: Any
                     ) -> tuple[list[_Coded], dict[str, np.ndarray]]:
    """A BLOCK NDU whose weight is G and H (payload: LS, BI, BN..., G, H; header ids: G, H,
    LS, BN..., BI)."""
    parts = _member_parts(members, arrays, cfg)
    for name, part in ((weight + "_G", lr.g), (weight + "_H", lr.h)):
        k, qp = _quantize_with_fallback(part, part.shape[0], part.shape[1],
                                        cfg.qp_for(name, 2), cfg)
        parts.append(_Part(k, part.shape, qp, name=name))
    cpt = (CPT.LS if "weight.ls" in members else 0) | (CPT.BI if "bias" in members else 0) \
        | (CPT.BN if "bn.beta" in members else 0)
    hdr = _base_header(weight, lr.shape, node, cfg, PayloadType.BLOCK)
    hdr.topology_elem_id = None
    hdr.topology_elem_id_list = [weight + "_G", weight + "_H"] + [
        members[r] for r in _BLOCK_HEADER_ORDER if r in members]
    hdr.compressed_parameter_types = int(cpt)
    _dc_header(hdr, lr)
    coded = _code_parts(parts, cfg, hdr, dq=cfg.dq, has_qp=True, node=node)
    return [coded], {p.name: p.k for p in parts}


def iter_units(tensors: Mapping[str, Any], cfg: EncodeConfig, state: EncoderState | None = None,
               topology: Topology | None = None) -> Iterator[bytes]:
    """Encode ``tensors`` (a mapping whose values may be loaded lazily) and yield the stream's
    NNR units in order. At most 2 x threads tensors are in flight, so memory stays bounded for
    models larger than memory when the mapping loads tensors on access."""
    if not isinstance(tensors, Mapping):
        raise ConfigError("tensors must be a mapping of names to arrays")
    if state is not None and cfg.profile != 1:
        raise ConfigError("incremental coding (a state) needs profile 1")
    arrays = _Prepared(tensors)
    owner = _check_blocks(cfg, arrays)
    if cfg.low_rank is not None:
        _check_low_rank(cfg, arrays, state)
    names = list(arrays)
    nodes = _nodes(names, cfg, state, owner)
    layer_maps = _layer_maps(cfg, nodes, owner)
    sw = _stream_writer(cfg, topology)
    yield sw.getvalue()

    # The levels of a coded tensor are only needed for the all-zero check of differences and
    # for the state's history; otherwise a finished job keeps just its units, so that the
    # results waiting in order (up to 2 x threads) hold bytes, not tensors.
    keep_levels = cfg.differences or state is not None

    def job(name: str):
        members = (cfg.blocks or {}).get(name)
        node = nodes[name]
        tol = cfg.low_rank_for(name) if cfg.low_rank is not None else None
        if tol is not None:
            decomposed = _encode_decomposed(name, members or {}, arrays, node, cfg, tol)
            if decomposed is not None:
                return decomposed
        if members:
            result = _encode_block(name, members, arrays,
                                   _fit(node, arrays, [name, *members.values()]), cfg)
        else:
            result = _encode_one(name, arrays[name], _fit(node, arrays, [name]), cfg)
        return result if keep_levels else (result[0], {})

    def lps(name: str) -> bytes:
        """The NNR_LPS unit with the layer maps of ``name`` (before its NDUs), if any."""
        maps = layer_maps.get(name)
        if maps is None:
            return b""
        return write_unit(NnrUnitType.LPS, LayerParameterSetHeader(), maps.lps(sw.ctx.mps),
                          ctx=sw.ctx)

    def emit(name: str, result) -> bytes:
        coded, levels = result
        if isinstance(coded, list):     # a decomposed weight: G and H NDUs, or one BLOCK NDU
            return lps(name) + b"".join(
                write_unit(NnrUnitType.NDU, c.header, c.payload, ctx=sw.ctx) for c in coded)
        if cfg.differences and levels and not any(np.any(k) for k in levels.values()):
            return b""          # an all-zero update: no NDU ("no change")
        if state is not None:
            _update_state(state, cfg, nodes[name], levels, coded.payload)
        return lps(name) + write_unit(NnrUnitType.NDU, coded.header, coded.payload,
                                      ctx=sw.ctx)

    threads = min(cfg.thread_count(), max(1, len(nodes)))
    if threads == 1:
        for name in nodes:
            yield emit(name, job(name))
        return
    # Units leave in stream order (InOrder: up to 2 x threads jobs queued, more while a large
    # head runs; a job reads its tensor when it starts, and a finished one holds only its
    # coded units).
    pending = InOrder(2 * threads)
    with ThreadPoolExecutor(threads) as pool:
        for name in nodes:
            for n, f in pending.push(name, pool.submit(job, name), _size_hint(tensors, name)):
                yield emit(n, f.result())
        for n, f in pending.drain():
            yield emit(n, f.result())


def _size_hint(tensors: Mapping[str, Any], name: str) -> int:
    """The number of values of ``name`` without loading it where the source is lazy (0 when
    unknown)."""
    shape_of = getattr(tensors, "shape_of", None)
    if shape_of is not None:
        return prod(shape_of(name))
    if isinstance(tensors, np.lib.npyio.NpzFile):
        return 0
    shape = getattr(tensors[name], "shape", None)
    return prod(shape) if shape is not None else 0


def _layer_maps(cfg: EncodeConfig, nodes: Mapping[str, _Node], owner: Mapping[str, str]
                ) -> dict[str, Any]:
    """The layer maps of ``cfg.performance_maps`` by NDU: each must name the first tensor of
    an NDU (a weight, or a block's weight)."""
    maps = cfg.performance_maps
    layers = getattr(maps, "layers", None) if maps is not None else None
    if not layers:
        return {}
    for name in layers:
        if name in owner:
            raise ConfigError(f"layer map of {name!r}: the tensor is coded in the block of "
                              f"{owner[name]!r}; key the map by that weight")
        if name not in nodes:
            raise ConfigError(f"layer map of {name!r}: no tensor of that name")
    return dict(layers)


class _Prepared(Mapping):
    """Validates each input tensor when it is first read (keeps a lazy source lazy)."""

    def __init__(self, source: Mapping[str, Any]) -> None:
        self._source = source
        self._names = list(source.keys())
        for name in self._names:
            if not isinstance(name, str) or not name or "\0" in name:
                raise ConfigError(
                    f"tensor names must be non-empty strings without NUL, got {name!r}")

    def __getitem__(self, name: str) -> np.ndarray:
        return prepare_tensor(name, self._source[name])

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def encode_tensors(tensors: Mapping[str, Any], cfg: EncodeConfig,
                   state: EncoderState | None = None, topology: Topology | None = None) -> bytes:
    return b"".join(iter_units(tensors, cfg, state, topology))
