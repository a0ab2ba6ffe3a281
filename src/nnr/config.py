"""Validated, immutable encoder configuration; CLI flags map one-to-one onto its fields."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Collection, Mapping

from nnr.errors import ConfigError
from nnr.quantization import qp_range

__all__ = ["EncodeConfig", "DecodeLimits", "BLOCK_ROLES"]

#: Roles of the tensors that an NNR_PT_BLOCK NDU carries beside the weight.
BLOCK_ROLES = ("weight.ls", "bias", "bn.beta", "bn.gamma", "bn.mean", "bn.var")

_CODEBOOK_MODES = ("off", "on", "auto")
_STOCHASTIC_MODES = ("binary", "ternary")


@dataclass(frozen=True)
class EncodeConfig:
    """How :func:`nnr.encode` codes a set of tensors.

    ``qp`` applies to tensors with two or more dimensions ("weights"), ``nonweight_qp`` to
    1-D tensors (biases, norms); ``None`` means -75 where the qp field can carry it, else the
    smallest qp it can carry. ``qp_per_tensor`` overrides both by name. ``blocks`` maps a
    weight's name to ``{role: tensor name}`` (roles in :data:`BLOCK_ROLES`) to code them
    together in one NNR_PT_BLOCK unit. ``dq_per_tensor`` and ``codebook_per_tensor`` override
    ``dq`` and ``codebook`` by name for tensors coded in an NDU of their own (the target-driven
    search chooses them per tensor). ``lambda_scale`` > 0 turns on rate-distortion optimised
    quantization (RDOQ for uniform, a rate-aware trellis for DQ; NNCodec's scaling).
    ``init_estimate_limit`` bounds the positions of a tensor from which the context
    initialisation sets are chosen (0: the whole tensor, as NNCodec does; the default costs
    under 0.02 % in size on MiniLM and EfficientNet-Lite0 and saves most of the pass).
    ``init_estimate`` is what that choice looks at: ``"levels"``, the bins the tensor is coded
    with, or ``"nncodec"``, NNCodec's estimate on the DQ multipliers (its choices, so with
    ``init_estimate_limit=0`` NNCodec's streams byte for byte; with DQ it costs 0.01-0.14 % in
    size and estimates more bins).
    ``raw_float`` (True, or tensor names) stores float tensors losslessly as float32 in
    NNR_PT_RAW_FLOAT units instead of quantizing them.
    ``low_rank`` (a tolerance, or ``{weight: tolerance}``) codes each weight whose low-rank
    decomposition within that relative Frobenius error saves parameters as G and H (DC tool;
    :mod:`nnr.reduction.lowrank`); in the mapping a weight may instead name the factors to
    code (an :class:`nnr.reduction.LowRank`, e.g. fine-tuned by
    :func:`nnr.reduction.fine_tune_low_rank`). ``performance_maps`` (an
    :class:`nnr.reduction.PerformanceMaps`) is written into the MPS, its layer maps into
    NNR_LPS units before their layers' NDUs.
    ``stochastic`` (``"binary"`` / ``"ternary"``) quantizes every float tensor with two or more
    dimensions to levels in {-1, 1} / {-1, 0, 1} times one step per tensor by stochastic
    (unbiased) rounding, drawn from ``seed`` and the tensor's name (same input and seed, same
    bytes); those NDUs are coded without DQ; 1-D tensors are quantized as usual
    (:mod:`nnr.quantization.lowbit`). ``bit_depth`` (2..31) is NNCodec's integer-aligned mode
    (``int_quant_bw``): each float tensor's qp maps its 99.95th percentile of |w| onto the
    largest ``bit_depth``-bit level (at least 8 bits for 1-D tensors) and its levels are
    clipped to that range, without DQ (``dq`` is ignored: clipped DQ levels would break the
    DQ state path); ``qp`` and ``nonweight_qp`` are then unused.
    """

    qp: int = -38
    qp_density: int = 2
    nonweight_qp: int | None = None
    qp_per_tensor: Mapping[str, int] | None = None
    dq: bool = True
    dq_per_tensor: Mapping[str, bool] | None = None
    codebook_per_tensor: Mapping[str, str] | None = None
    scan_order: int = 0
    codebook: str = "off"
    profile: int = 1
    param_opt: bool = True
    row_skip: bool = False
    cabac_unary_length_minus1: int = 10
    threads: int | None = None
    blocks: Mapping[str, Mapping[str, str]] | None = None
    lambda_scale: float = 0.0
    init_estimate_limit: int = 1 << 16
    init_estimate: str = "levels"
    differences: bool = False
    tca: bool = False
    hdsp: bool = False
    parent_id: str = "counter"
    parent: bytes | Mapping[str, bytes] | None = None
    raw_float: bool | Collection[str] = False
    low_rank: float | Mapping[str, float] | None = None
    performance_maps: Any = None
    stochastic: str | None = None
    seed: int = 0
    bit_depth: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.qp_density <= 7:
            raise ConfigError(f"qp_density must be in 1..7, got {self.qp_density}")
        lo, hi = qp_range(self.qp_density)
        if not lo <= self.qp <= hi:
            raise ConfigError(f"qp {self.qp} outside [{lo}, {hi}] for qp_density {self.qp_density}")
        if self.nonweight_qp is not None and not lo <= self.nonweight_qp <= hi:
            raise ConfigError(f"nonweight_qp {self.nonweight_qp} outside [{lo}, {hi}] "
                              f"for qp_density {self.qp_density}")
        for name, value in (self.qp_per_tensor or {}).items():
            if not lo <= int(value) <= hi:
                raise ConfigError(f"qp {value} for tensor {name!r} outside [{lo}, {hi}]")
        if self.scan_order not in range(5):
            raise ConfigError(f"scan_order must be 0..4, got {self.scan_order}")
        if self.codebook not in _CODEBOOK_MODES:
            raise ConfigError(f"codebook must be one of {_CODEBOOK_MODES}, got {self.codebook!r}")
        for name, value in (self.dq_per_tensor or {}).items():
            if not isinstance(value, bool):
                raise ConfigError(f"dq for tensor {name!r} must be True or False, got {value!r}")
        for name, value in (self.codebook_per_tensor or {}).items():
            if value not in _CODEBOOK_MODES:
                raise ConfigError(f"codebook for tensor {name!r} must be one of "
                                  f"{_CODEBOOK_MODES}, got {value!r}")
        if self.profile not in (0, 1):
            raise ConfigError(f"profile must be 0 or 1, got {self.profile}")
        if not 0 <= self.cabac_unary_length_minus1 <= 255:
            raise ConfigError("cabac_unary_length_minus1 must be in 0..255")
        if not (self.lambda_scale >= 0 and self.lambda_scale < float("inf")):
            raise ConfigError(f"lambda_scale must be a finite number >= 0, got {self.lambda_scale}")
        if self.init_estimate not in ("levels", "nncodec"):
            raise ConfigError(f"init_estimate must be 'levels' or 'nncodec', got {self.init_estimate!r}")
        if self.init_estimate_limit < 0:
            raise ConfigError("init_estimate_limit must be >= 0 (0: the whole tensor)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        for weight, members in (self.blocks or {}).items():
            bad = sorted(set(members) - set(BLOCK_ROLES))
            if bad:
                raise ConfigError(f"block of {weight!r}: unknown role(s) {bad}; roles are "
                                  f"{', '.join(BLOCK_ROLES)}")
            bn = [r for r in BLOCK_ROLES if r.startswith("bn.") and r in members]
            if bn and len(bn) != 4:
                raise ConfigError(f"block of {weight!r}: batch-norm needs all of "
                                  "bn.beta, bn.gamma, bn.mean, bn.var")
        self._check_raw_float()
        self._check_reduction()
        self._check_lowbit()
        if (self.differences or self.tca or self.hdsp) and self.profile == 0:
            raise ConfigError("differences, tca and hdsp are edition-2 tools: they need profile 1")
        if self.parent_id not in ("counter", "sha256"):
            raise ConfigError(f"parent_id must be 'counter' or 'sha256', got {self.parent_id!r}")
        if self.parent is not None:
            ids = self.parent.values() if isinstance(self.parent, Mapping) else [self.parent]
            if self.parent_id != "sha256" or any(len(bytes(i)) != 32 for i in ids):
                raise ConfigError("parent= takes SHA-256 node ids (32 bytes, e.g. "
                                  "EncoderState.heads()) with parent_id='sha256'")
        if (self.tca or self.hdsp) and not self.differences:
            raise ConfigError("tca and hdsp code an update against its parent: they need "
                              "differences=True")
        if self.row_skip and self.profile == 0:
            raise ConfigError("row skipping needs profile 1 (edition 2)")

    def _check_raw_float(self) -> None:
        if isinstance(self.raw_float, (str, bytes)):
            raise ConfigError("raw_float must be True/False or a collection of tensor names")
        if not self.raw_float or not self.blocks:
            return
        in_blocks = set(self.blocks) | {n for m in self.blocks.values() for n in m.values()}
        if self.raw_float is True or in_blocks & set(self.raw_float):
            raise ConfigError("raw_float tensors cannot be coded in blocks")

    def _check_reduction(self) -> None:
        """``low_rank``: relative Frobenius tolerances in [0, 1) (one for every weight, or per
        weight name); ``performance_maps``: an :class:`nnr.reduction.PerformanceMaps`."""
        lr = self.low_rank
        if lr is not None:
            from nnr.reduction.lowrank import LowRank, check_factors
            values = list(lr.items()) if isinstance(lr, Mapping) else [(None, lr)]
            for name, v in values:
                if isinstance(v, LowRank) and name is not None:
                    check_factors(name, v)
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                    raise ConfigError(f"low_rank tolerances must be numbers in [0, 1) (or, per "
                                      f"weight, an nnr.reduction.LowRank), got {v!r}")
            if self.differences:
                raise ConfigError("low_rank (decomposition) cannot code differential updates")
            if self.raw_float is True or (isinstance(lr, Mapping) and self.raw_float
                                          and set(lr) & set(self.raw_float)):
                raise ConfigError("raw_float tensors cannot be decomposed (low_rank)")
        if self.performance_maps is not None:
            from nnr.reduction.perfmaps import PerformanceMaps
            if not isinstance(self.performance_maps, PerformanceMaps):
                raise ConfigError("performance_maps must be an nnr.reduction.PerformanceMaps")
            self.performance_maps.check()

    def _check_lowbit(self) -> None:
        """``stochastic``, ``seed`` and ``bit_depth``, and what they cannot be combined with
        (both choose the qps themselves)."""
        if self.stochastic is not None and self.stochastic not in _STOCHASTIC_MODES:
            raise ConfigError(f"stochastic must be None, 'binary' or 'ternary', got "
                              f"{self.stochastic!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < 1 << 64:
            raise ConfigError(f"seed must be an integer in [0, 2**64), got {self.seed!r}")
        bd = self.bit_depth
        if bd is not None and (isinstance(bd, bool) or not isinstance(bd, int)
                               or not 2 <= bd <= 31):
            raise ConfigError(f"bit_depth must be an integer in 2..31 (1 bit has no positive "
                              f"signed level), got {bd!r}")
        if self.stochastic is None and bd is None:
            return
        what = f"stochastic={self.stochastic!r}" if bd is None else f"bit_depth={bd}"
        if self.stochastic is not None and bd is not None:
            raise ConfigError("stochastic and bit_depth are two different quantizers: give one")
        if self.qp_per_tensor or self.dq_per_tensor or self.codebook_per_tensor:
            raise ConfigError(f"{what} chooses the qps itself: it cannot be combined with "
                              "qp_per_tensor, dq_per_tensor or codebook_per_tensor (nor with "
                              "a target-driven qp search)")
        if self.low_rank is not None:
            raise ConfigError(f"{what} cannot be combined with low_rank (decomposition)")
        if self.stochastic is not None and self.codebook != "off":
            raise ConfigError("stochastic quantization fixes the weight levels to {-1, (0,) 1}: "
                              "codebook must be 'off'")

    def low_rank_for(self, name: str) -> Any:
        """The decomposition tolerance of weight ``name``, or the factors given for it (a
        :class:`nnr.reduction.LowRank`); None: not decomposed."""
        if isinstance(self.low_rank, Mapping):
            value = self.low_rank.get(name)
            if value is None or not isinstance(value, (int, float)):
                return value
            return float(value)
        return None if self.low_rank is None else float(self.low_rank)

    def is_raw_float(self, name: str) -> bool:
        """Whether float tensor ``name`` is stored as NNR_PT_RAW_FLOAT (lossless float32)."""
        return self.raw_float is True or (bool(self.raw_float) and name in self.raw_float)

    @classmethod
    def from_options(cls, config: "EncodeConfig | None" = None, **options: Any) -> "EncodeConfig":
        names = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(f"unknown encoder option(s): {', '.join(unknown)}")
        base = config or cls()
        return replace(base, **options) if options else base

    def effective_nonweight_qp(self) -> int:
        if self.nonweight_qp is not None:
            return self.nonweight_qp
        lo, _ = qp_range(self.qp_density)
        return max(-75, lo)

    def for_tensor(self, name: str) -> "EncodeConfig":
        """This configuration with ``dq`` and ``codebook`` as ``dq_per_tensor`` /
        ``codebook_per_tensor`` set them for ``name`` (tensors coded in an NDU of their own)."""
        dq = (self.dq_per_tensor or {}).get(name, self.dq)
        codebook = (self.codebook_per_tensor or {}).get(name, self.codebook)
        if bool(dq) == self.dq and codebook == self.codebook:
            return self
        return replace(self, dq=bool(dq), codebook=codebook)

    def qp_for(self, name: str, ndim: int) -> int:
        if self.qp_per_tensor and name in self.qp_per_tensor:
            return int(self.qp_per_tensor[name])
        return self.qp if ndim > 1 else self.effective_nonweight_qp()

    def thread_count(self) -> int:
        return self.threads or os.cpu_count() or 1


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds a decoder enforces before it allocates (hostile-input protection).

    ``max_tensor_elements`` / ``max_total_elements``: elements one tensor / the whole stream may
    declare. An NDU may declare at most ``max_elements_per_payload_byte`` x its payload bytes +
    ``free_elements`` elements, except for tensors that the syntax codes below one bin per
    element (a one-entry codebook, row skipping), whose excess over that budget adds up to at
    most ``max_sparse_elements`` per stream (:mod:`nnr.limits` explains the policy).
    """

    max_tensor_elements: int = 1 << 31
    max_total_elements: int = 1 << 34
    max_elements_per_payload_byte: int = 2000
    free_elements: int = 4096
    max_sparse_elements: int = 1 << 26
