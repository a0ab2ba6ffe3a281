"""Encoding of named tensors into NNR units (one NDU per tensor)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import prod
from typing import Any, Mapping

import numpy as np

from nnr.bitstream.enums import CompressedParameterTypes as CPT
from nnr.bitstream.enums import NnrUnitType, PayloadType, QuantizationMethodFlags
from nnr.bitstream.stream import StreamContext, StreamWriter, write_unit
from nnr.bitstream.units.compressed_data import (CabacEntryPoint, CompressedDataUnitHeader,
                                                 IntegerCodebook)
from nnr.bitstream.units.model_parameter_set import ModelParameterSet
from nnr.bitstream.units.start import StartUnitHeader
from nnr.bitstream.units.topology import TopologyPayload, TopologyUnitHeader
from nnr.config import BLOCK_ROLES, EncodeConfig
from nnr.entropy import TensorCoding, TensorSpec, decode_payload, encode_payload
from nnr.errors import ConfigError
from nnr.quantization import make_codebook, qp_range, quantize

__all__ = ["EncoderState", "Topology", "encode_tensors", "prepare_tensor"]

_INT_KINDS = "iub"
_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


@dataclass
class EncoderState:
    """Encoder side of an incremental sequence (mirrors :class:`nnr.decoder.DecoderState`)."""

    levels: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)
    hdsp_history: dict[str, np.ndarray] = field(default_factory=dict)


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
            arr = arr.astype(np.float32)
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
          codebook: IntegerCodebook | None = None) -> TensorSpec:
    rows, cols = _rows_cols(shape)
    return TensorSpec(rows=rows, cols=cols, scan_order=scan, dq=dq, has_qp=has_qp,
                      qp_density=cfg.qp_density, profile=cfg.profile,
                      cabac_unary_length=cfg.cabac_unary_length_minus1 + 1,
                      codebook_size=codebook.codebook_size if codebook and cfg.profile == 1 else 0,
                      codebook_zero_offset=codebook.cb_zero_offset if codebook and cfg.profile == 1
                      else 0,
                      legacy_v03=cfg.profile == 0)


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


def _base_header(name: str, shape, index: int, cfg: EncodeConfig, pt: PayloadType
                 ) -> CompressedDataUnitHeader:
    hdr = CompressedDataUnitHeader(nnr_compressed_data_unit_payload_type=int(pt),
                                   topology_elem_id=name, tensor_dimensions=list(shape),
                                   cabac_unary_length_minus1=cfg.cabac_unary_length_minus1)
    if cfg.profile == 1:
        hdr.node_id_present_flag = 1
        hdr.device_id = 0
        hdr.parameter_id = index
        hdr.put_node_depth = 0
    return hdr


@dataclass
class _Part:
    """One tensor of an NDU payload, ready for the entropy coder."""

    k: np.ndarray
    shape: tuple[int, ...]
    qp: int
    codebook: IntegerCodebook | None = None


def _code_parts(parts: list[_Part], cfg: EncodeConfig, hdr: CompressedDataUnitHeader, *,
                dq: bool, has_qp: bool) -> _Coded:
    """Code the tensors of one NDU (payload order) and complete its header."""
    specs, codings = [], []
    for part in parts:
        scan = _scan_for(part.shape, cfg)
        specs.append(_spec(part.shape, cfg, scan=scan, dq=dq, has_qp=has_qp,
                           codebook=part.codebook))
        codings.append(TensorCoding(qp=part.qp, row_skip=_row_skip(part.k, part.shape, cfg,
                                                                   scan, dq)))
    payload, _ = encode_payload([p.k for p in parts], specs, codings, cfg.param_opt)
    weight = parts[-1]
    hdr.dq_flag = int(dq)
    hdr.codebook = weight.codebook
    if len(weight.shape) > 1:
        hdr.scan_order = _scan_for(weight.shape, cfg)
        if hdr.scan_order and any(s.rows > (4 << s.scan_order) for s in specs):
            hdr.cabac_entry_point_list = _entry_points(payload, specs)
    return _Coded(hdr, payload)


def _code_levels(k: np.ndarray, shape, cfg: EncodeConfig, hdr: CompressedDataUnitHeader, *,
                 qp: int, dq: bool, has_qp: bool, codebook: IntegerCodebook | None = None
                 ) -> _Coded:
    return _code_parts([_Part(k, shape, qp, codebook)], cfg, hdr, dq=dq, has_qp=has_qp)


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


def _encode_one(name: str, arr: np.ndarray, index: int, cfg: EncodeConfig) -> _Coded:
    shape = arr.shape
    rows, cols = _rows_cols(shape)
    if arr.dtype == np.int32:
        hdr = _base_header(name, shape, index, cfg, PayloadType.INT)
        return _code_levels(arr.ravel(), shape, cfg, hdr, qp=0, dq=False, has_qp=False)
    qp = cfg.qp_for(name, arr.ndim)
    candidates = []
    if cfg.codebook in ("off", "auto"):
        k, qp_u = _quantize_with_fallback(arr, rows, cols, qp, cfg)
        hdr = _base_header(name, shape, index, cfg, PayloadType.FLOAT)
        candidates.append(_code_levels(k, shape, cfg, hdr, qp=qp_u, dq=cfg.dq, has_qp=True))
    if cfg.codebook in ("on", "auto"):
        k, codebook, cb_qp = _codebook_levels(arr, shape, cfg, qp)
        hdr = _base_header(name, shape, index, cfg, PayloadType.FLOAT)
        candidates.append(_code_levels(k, shape, cfg, hdr, qp=cb_qp, dq=False, has_qp=True,
                                       codebook=codebook))
    return min(candidates, key=_coded_size)


def _coded_size(c: _Coded) -> int:
    return len(write_unit(NnrUnitType.NDU, c.header, c.payload, ctx=_CTX_SIZE))


_CTX_SIZE = StreamContext(general_profile_idc=1)


def _quantize_with_fallback(arr: np.ndarray, rows: int, cols: int, qp: int, cfg: EncodeConfig
                            ) -> tuple[np.ndarray, int]:
    """Quantize; if the levels would overflow 32 bits, raise qp until they fit."""
    _, hi = qp_range(cfg.qp_density)
    scan = _scan_for(arr.shape, cfg)
    while True:
        try:
            return quantize(arr, rows, cols, qp=qp, qp_density=cfg.qp_density, dq=cfg.dq,
                            scan_order=scan, lambda_scale=cfg.lambda_scale,
                            cabac_unary_length=cfg.cabac_unary_length_minus1 + 1), qp
        except ConfigError:
            if qp >= hi:
                raise
            qp = min(hi, qp + (1 << cfg.qp_density))


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
    sw.add(NnrUnitType.MPS, None, ModelParameterSet(
        topology_carriage_flag=1, mps_quantization_method_flags=int(QuantizationMethodFlags.QSU),
        mps_qp_density=cfg.qp_density, mps_quantization_parameter=0))
    sw.add(NnrUnitType.TPL, TopologyUnitHeader(topology.storage_format,
                                               topology.compression_format),
           TopologyPayload(topology_data=bytes(topology.data)))
    return sw


#: Payload order of the tensors of a BLOCK NDU besides the weight (which comes last), and
#: header order of their names (after the weight).
_BLOCK_PAYLOAD_ORDER = ("weight.ls", "bias", "bn.beta", "bn.gamma", "bn.mean", "bn.var")
_BLOCK_HEADER_ORDER = ("weight.ls", "bn.beta", "bn.gamma", "bn.mean", "bn.var", "bias")


def _encode_block(weight: str, members: Mapping[str, str], arrays: Mapping[str, np.ndarray],
                  index: int, cfg: EncodeConfig) -> _Coded:
    w = arrays[weight]
    parts = []
    for role in _BLOCK_PAYLOAD_ORDER:
        if role in members:
            arr = arrays[members[role]]
            k, qp = _quantize_with_fallback(arr, arr.shape[0], 1, cfg.qp_for(members[role], 1),
                                            cfg)
            parts.append(_Part(k, arr.shape, qp))
    rows, cols = _rows_cols(w.shape)
    k, qp = _quantize_with_fallback(w, rows, cols, cfg.qp_for(weight, w.ndim), cfg)
    parts.append(_Part(k, w.shape, qp))
    cpt = (CPT.LS if "weight.ls" in members else 0) | (CPT.BI if "bias" in members else 0) \
        | (CPT.BN if "bn.beta" in members else 0)
    hdr = _base_header(weight, w.shape, index, cfg, PayloadType.BLOCK)
    hdr.topology_elem_id = None
    hdr.topology_elem_id_list = [weight] + [members[r] for r in _BLOCK_HEADER_ORDER
                                            if r in members]
    hdr.compressed_parameter_types = int(cpt)
    return _code_parts(parts, cfg, hdr, dq=cfg.dq, has_qp=True)


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


def encode_tensors(tensors: Mapping[str, Any], cfg: EncodeConfig,
                   state: EncoderState | None = None, topology: Topology | None = None) -> bytes:
    if not isinstance(tensors, Mapping):
        raise ConfigError("tensors must be a mapping of names to arrays")
    if state is not None:
        from nnr.errors import UnsupportedFeatureError
        raise UnsupportedFeatureError("incremental encoding is not implemented yet")
    arrays = {name: prepare_tensor(name, value) for name, value in tensors.items()}
    owner = _check_blocks(cfg, arrays)
    jobs = []
    for index, name in enumerate(arrays):
        if name in owner:
            continue
        members = (cfg.blocks or {}).get(name)
        if members:
            jobs.append(lambda n=name, m=members, i=index: _encode_block(n, m, arrays, i, cfg))
        else:
            jobs.append(lambda n=name, i=index: _encode_one(n, arrays[n], i, cfg))
    threads = min(cfg.thread_count(), max(1, len(jobs)))
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            coded = list(pool.map(lambda job: job(), jobs))
    else:
        coded = [job() for job in jobs]
    sw = _stream_writer(cfg, topology)
    for c in coded:
        sw.add(NnrUnitType.NDU, c.header, c.payload)
    return sw.getvalue()
