"""Real trained networks with their real metrics, for rate-distortion measurements of nnr
against NNCodec (issue "Smallest streams at equal accuracy").

Every model module exposes ``load() -> (tensors, evaluate)``: ``tensors`` maps names to float32
arrays (the weights as shipped), and ``evaluate(decoded_tensors) -> dict[str, float]`` runs the
model with the given tensors on its task. ``evaluate`` is an :class:`~.common.Evaluator`:
``evaluate.reference`` holds the metrics of the uncompressed weights (computed once at load and
cached, like the loaded model, for the life of the process), ``evaluate.accept(metrics)`` says
whether a decoded model is within the model's tolerance (``evaluate.tolerance``, in words), and
``evaluate.primary`` names the metric to plot.

    from benchmarks.eval import REGISTRY, load, unavailable
    if unavailable("fashion_cnn") is None:
        tensors, evaluate = load("fashion_cnn")
        print(evaluate(nnr.decode(nnr.encode(tensors, qp=-30))), evaluate.reference)

The models need optional packages (torch, model packages, Debian data); ``unavailable(name)``
returns why a model cannot be loaded, or None. See benchmarks/requirements.txt.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .common import Evaluator, Metrics

#: name -> module (relative to this package). Order: cheapest first.
REGISTRY: dict[str, str] = {
    "fashion_cnn": ".fashion_cnn",
    "efficientnet_lite0": ".efficientnet_lite0",
    "minilm_l6": ".minilm_l6",
}

__all__ = ["REGISTRY", "Evaluator", "Metrics", "module", "unavailable", "load", "names"]


def names() -> list[str]:
    return list(REGISTRY)


def module(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name], __name__)


def unavailable(name: str) -> str | None:
    """Why model ``name`` cannot be loaded here (missing package or data), or None."""
    return module(name).unavailable()


def load(name: str):
    """``(tensors, evaluate)`` of model ``name`` (cached per process)."""
    return module(name).load()
