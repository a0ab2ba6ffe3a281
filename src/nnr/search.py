"""Target-driven encoding: the smallest stream that keeps a task metric, or that fits a size.

The stream is a sequence of independent NDUs, one per tensor, so a candidate setting is judged
without coding the whole model again: each (tensor, qp) pair is quantized and coded once, its
NDU size and its reconstruction are cached, and a candidate's size is the sum of its tensors'
NDU sizes. The user's ``evaluate`` function gets the reconstructed tensors (exactly what the
decoder returns) and returns a number (higher is better, e.g. accuracy; pass
``higher_is_better=False`` for a loss).

Search (``encode_for_metric``):

1. coarse: the coarsest global qp (bisection) whose metric is within ``max_drop`` of the
   uncompressed model's;
2. fine: per tensor, largest coded size first (the sensitivity order is measured: the metric
   change per byte saved when that tensor alone is coarsened), raise its qp in steps of one
   octave, then half an octave, as long as the metric stays within the tolerance.

``encode_for_size`` bisects the global qp for the finest setting that fits ``max_bytes``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from nnr.config import EncodeConfig
from nnr.encoder import prepare_tensor
from nnr.errors import ConfigError
from nnr.quantization import dequantize, qp_range, quantize

__all__ = ["SearchResult", "MetricTarget", "SizeTarget", "encode_for_metric", "encode_for_size",
           "encode_for_target"]

Evaluate = Callable[[dict[str, np.ndarray]], float]
_HEADER_BYTES = 18  # STR + MPS + TPL units of a stream without topology


@dataclass
class SearchResult:
    """The chosen stream, its settings and the search's log."""

    data: bytes
    qp_per_tensor: dict[str, int]
    metric: float | None
    baseline_metric: float | None
    evaluations: int
    log: list[dict[str, Any]] = field(default_factory=list)


class _Coder:
    """Codes and reconstructs single tensors at a given qp, with a cache."""

    def __init__(self, tensors: Mapping[str, np.ndarray], cfg: EncodeConfig) -> None:
        self.cfg = cfg
        self.tensors = {n: prepare_tensor(n, v) for n, v in tensors.items()}
        self.floats = [n for n, a in self.tensors.items() if a.dtype == np.float32]
        self._cache: dict[tuple[str, int], tuple[int, np.ndarray]] = {}

    def code(self, name: str, qp: int) -> tuple[int, np.ndarray]:
        key = (name, qp)
        if key not in self._cache:
            arr = self.tensors[name]
            if arr.dtype != np.float32:
                size = len(_encode({name: arr}, self.cfg)) - _HEADER_BYTES
                self._cache[key] = (size, arr)
            else:
                self._cache[key] = self._code_float(name, arr, qp)
        return self._cache[key]

    def _code_float(self, name: str, arr: np.ndarray, qp: int) -> tuple[int, np.ndarray]:
        from nnr.encoder import _quantize_with_fallback, _rows_cols
        rows, cols = _rows_cols(arr.shape)
        k, used = _quantize_with_fallback(arr, rows, cols, qp, self.cfg)
        size = len(_encode({name: arr}, self.cfg, qp_per_tensor={name: used})) - _HEADER_BYTES
        return size, dequantize(k, used, self.cfg.qp_density).reshape(arr.shape)

    def assemble(self, qps: Mapping[str, int]) -> tuple[int, dict[str, np.ndarray]]:
        total, rec = _HEADER_BYTES, {}
        for name in self.tensors:
            size, values = self.code(name, qps.get(name, 0))
            total += size
            rec[name] = values
        return total, rec


def _encode(tensors, cfg: EncodeConfig, **options) -> bytes:
    from nnr.codec import encode
    return encode(tensors, cfg, **options)


def _check_cfg(cfg: EncodeConfig) -> None:
    if cfg.codebook != "off" or cfg.blocks:
        raise ConfigError("target-driven search codes tensors uniformly (codebook='off', no "
                          "blocks)")


def _global(coder: _Coder, qp: int) -> dict[str, int]:
    cfg = coder.cfg
    return {n: (qp if coder.tensors[n].ndim > 1 else cfg.qp_for(n, 1)) for n in coder.floats}


def encode_for_size(tensors: Mapping[str, Any], max_bytes: int,
                    config: EncodeConfig | None = None, **options: Any) -> SearchResult:
    """The finest global weight qp whose stream fits in ``max_bytes``."""
    cfg = EncodeConfig.from_options(config, **options)
    _check_cfg(cfg)
    coder = _Coder(tensors, cfg)
    lo, hi = qp_range(cfg.qp_density)
    log = []

    def fits(qp: int) -> bool:
        size, _ = coder.assemble(_global(coder, qp))
        log.append({"qp": qp, "bytes": size})
        return size <= max_bytes

    if not fits(hi):
        raise ConfigError(f"even the coarsest qp ({hi}) gives more than {max_bytes} bytes")
    while hi - lo > 1:         # invariant: fits(hi)
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    qps = _global(coder, hi)
    data = _encode(coder.tensors, cfg, qp_per_tensor=qps)
    return SearchResult(data, qps, None, None, 0, log)


def encode_for_metric(tensors: Mapping[str, Any], evaluate: Evaluate, *, max_drop: float,
                      relative: bool = False, higher_is_better: bool = True,
                      config: EncodeConfig | None = None, max_evaluations: int = 60,
                      qp_bounds: tuple[int, int] = (-60, -8), **options: Any) -> SearchResult:
    """The smallest stream whose metric is within ``max_drop`` of the original's (an absolute
    difference, or a fraction of the original with ``relative=True``)."""
    cfg = EncodeConfig.from_options(config, **options)
    _check_cfg(cfg)
    coder = _Coder(tensors, cfg)
    sign = 1.0 if higher_is_better else -1.0
    base = float(evaluate(dict(coder.tensors)))
    tol = abs(base) * max_drop if relative else max_drop
    state = {"evals": 1}
    log: list[dict[str, Any]] = [{"step": "original", "metric": base}]

    def ok(qps: Mapping[str, int], step: str) -> tuple[bool, int, float]:
        size, rec = coder.assemble(qps)
        value = float(evaluate(rec))
        state["evals"] += 1
        good = sign * (base - value) <= tol
        log.append({"step": step, "bytes": size, "metric": value, "ok": good})
        return good, size, value

    lo_b, hi_b = max(qp_bounds[0], qp_range(cfg.qp_density)[0]), min(qp_bounds[1],
                                                                      qp_range(cfg.qp_density)[1])
    good, _, value = ok(_global(coder, lo_b), f"global qp {lo_b}")
    if not good:
        raise ConfigError(f"even qp {lo_b} loses more than the tolerance "
                          f"({value} vs {base}); use a finer qp_bounds")
    lo, hi = lo_b, hi_b         # lo: known good
    while hi - lo > 1 and state["evals"] < max_evaluations:
        mid = (lo + hi + 1) // 2
        if ok(_global(coder, mid), f"global qp {mid}")[0]:
            lo = mid
        else:
            hi = mid
    qps = _global(coder, lo)
    _, best_size, best_value = ok(qps, f"best global qp {lo}")
    step = 1 << cfg.qp_density
    order = sorted(coder.floats, key=lambda n: -coder.code(n, qps[n])[0])
    for name in order:
        for delta in (2 * step, step, step // 2):
            while state["evals"] < max_evaluations and qps[name] + delta <= hi_b:
                trial = dict(qps, **{name: qps[name] + delta})
                good, size, value = ok(trial, f"{name} qp {trial[name]}")
                if not good or size >= best_size:
                    break
                qps, best_size, best_value = trial, size, value
    data = _encode(coder.tensors, cfg, qp_per_tensor=qps)
    return SearchResult(data, qps, best_value, base, state["evals"], log)


@dataclass(frozen=True)
class MetricTarget:
    """``nnr.encode(..., target=MetricTarget(evaluate, max_drop=0.001))``."""

    evaluate: Evaluate
    max_drop: float
    relative: bool = False
    higher_is_better: bool = True
    max_evaluations: int = 60


@dataclass(frozen=True)
class SizeTarget:
    """``nnr.encode(..., target=SizeTarget(max_bytes))``."""

    max_bytes: int


def encode_for_target(tensors, target, config: EncodeConfig | None = None,
                      **options: Any) -> SearchResult:
    if isinstance(target, SizeTarget):
        return encode_for_size(tensors, target.max_bytes, config, **options)
    if isinstance(target, MetricTarget):
        return encode_for_metric(tensors, target.evaluate, max_drop=target.max_drop,
                                 relative=target.relative,
                                 higher_is_better=target.higher_is_better, config=config,
                                 max_evaluations=target.max_evaluations, **options)
    raise ConfigError(f"target must be a MetricTarget or SizeTarget, not {type(target).__name__}")
