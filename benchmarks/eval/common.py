"""Shared pieces of the evaluation models: optional-dependency checks, tensor conversion,
classifier metrics, and the object that ``load()`` returns as ``evaluate``.

Everything here imports only numpy at module level; torch is imported lazily so that the
registry can report *why* a model is unavailable instead of failing at import.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

Metrics = dict[str, float]


def missing_modules(*modules: str) -> list[str]:
    """The names among ``modules`` that cannot be imported (checked without importing)."""
    out = []
    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except (ImportError, ValueError):
            out.append(m)
    return out


def package_dir(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return os.path.dirname(spec.origin)


def torch_setup():
    """Import torch for inference: no autograd and a fixed thread count (env NNR_EVAL_THREADS,
    default 1). One thread is the default because on a shared 2-core machine torch's OpenMP
    threads spin against other processes (2 threads measured 1.4-1.8x slower than 1 there);
    on an idle machine NNR_EVAL_THREADS=2 makes the transformer about 1.7x faster."""
    import torch
    torch.set_grad_enabled(False)
    threads = int(os.environ.get("NNR_EVAL_THREADS", "0")) or 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch


def model_loader(unavailable: Callable[[], str | None], build: Callable) -> Callable:
    """A model module's ``load()``: checks ``unavailable()``, then ``build(torch)`` -> (tensors,
    Evaluator) once per process (the Evaluator gets the tensors as its reference); every call
    returns a fresh dict of the tensors and the shared evaluator."""

    @functools.lru_cache(maxsize=1)
    def cached():
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        tensors, ev = build(torch_setup())
        ev.set_reference(tensors)
        return tensors, ev

    def load():
        """-> (tensors, evaluate): the float32 weights and ``evaluate(tensors) -> metrics``."""
        tensors, ev = cached()
        return dict(tensors), ev

    return load


def as_torch(tensors: Mapping[str, np.ndarray], names, dtype=np.float32) -> dict:
    """``{name: torch tensor}`` for ``names``; decoded codebook tensors come back from the
    codecs as float64 and are cast to float32 like the model's own weights."""
    import torch
    out = {}
    for k in names:
        if k not in tensors:
            raise KeyError(f"tensor {k!r} is missing from the decoded model")
        out[k] = torch.from_numpy(np.ascontiguousarray(np.asarray(tensors[k], dtype=dtype)))
    return out


def classifier_metrics(logits: np.ndarray, labels: np.ndarray | None,
                       ref_logits: np.ndarray | None) -> Metrics:
    """top-1 accuracy against ``labels``; against the uncompressed model's logits: top-1
    agreement, mean KL(reference || this) of the softmax outputs, and logit MSE."""
    logits = np.asarray(logits, np.float64)
    pred = logits.argmax(1)
    m: Metrics = {}
    if labels is not None:
        m["top1"] = float((pred == labels).mean())
        m["correct"] = float((pred == labels).sum())
    if ref_logits is not None:
        ref = np.asarray(ref_logits, np.float64)
        m["agreement"] = float((pred == ref.argmax(1)).mean())
        lp = logits - logits.max(1, keepdims=True)
        lp -= np.log(np.exp(lp).sum(1, keepdims=True))
        lr = ref - ref.max(1, keepdims=True)
        lr -= np.log(np.exp(lr).sum(1, keepdims=True))
        m["kl"] = float((np.exp(lr) * (lr - lp)).sum(1).mean())
        m["logit_mse"] = float(((logits - ref) ** 2).mean())
    return m


@dataclass
class Evaluator:
    """``evaluate(tensors) -> metrics`` for one model, plus what the harness needs around it.

    ``reference`` holds the metrics of the uncompressed weights (computed once, cached here),
    ``tolerance`` says in words when a decoded model counts as equal to the uncompressed one,
    and ``accept(metrics)`` applies it. ``primary`` names the metric plotted against bytes.
    """

    name: str
    run: Callable[[Mapping[str, np.ndarray]], Metrics]
    accept_fn: Callable[[Metrics, Metrics], bool]
    tolerance: str
    primary: str
    reference: Metrics = field(default_factory=dict)
    seconds_reference: float = 0.0

    def __call__(self, tensors: Mapping[str, np.ndarray]) -> Metrics:
        return self.run(tensors)

    def accept(self, metrics: Metrics) -> bool:
        return bool(self.accept_fn(metrics, self.reference))

    def set_reference(self, tensors: Mapping[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        self.reference = self.run(tensors)
        self.seconds_reference = time.perf_counter() - t0
