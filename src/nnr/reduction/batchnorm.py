"""Batch-norm folding (BNF), as NNCodec's ``fold_bn`` / ``unfold_bn`` do it.

A convolution or linear layer with weight W followed by batch norm (gamma, beta, mean, var,
eps) computes ``alpha * (W x) + delta`` per output channel with

    alpha = gamma / sqrt(var + eps)           (a local scaling tensor, ``<w>_scaling``)
    delta = (bias - mean) * alpha + beta       (the bias; ``bias`` = 0 without one)

so four BN tensors (and the bias) become two, coded in the weight's NNR_PT_BLOCK unit as
``weight.ls`` and ``bias`` (``compressed_parameter_types`` LS | BI). W itself is unchanged.
The decoder side (:func:`unfold_batch_norm`) gives the BN tensors back in a form any framework
runs: beta = delta, mean = 0, var = 1 - eps, gamma = alpha (or gamma = 1 with alpha applied to
W, NNCodec's ``reconstruct_bnf`` + ``reconstruct_lsa``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction._common import as_float_dict

__all__ = ["BatchNorm", "find_batch_norms", "fold_batch_norm", "unfold_batch_norm",
           "scaling_name", "bias_name"]


@dataclass(frozen=True)
class BatchNorm:
    """Names of the batch norm that follows a weight, its epsilon, and the weight's own bias
    (``None``: the layer has none)."""

    gamma: str
    beta: str
    mean: str
    var: str
    eps: float = 1e-5
    bias: str | None = None

    @property
    def names(self) -> tuple[str, str, str, str]:
        return (self.gamma, self.beta, self.mean, self.var)


def scaling_name(weight: str) -> str:
    """NNCodec's name of the local scaling tensor of ``weight``."""
    return weight + "_scaling"


def bias_name(weight: str, bn: BatchNorm) -> str:
    """Name of the folded bias: the layer's bias, else ``<w>.bias`` (NNCodec's choice)."""
    return bn.bias if bn.bias is not None else weight + ".bias"


def find_batch_norms(tensors: Mapping[str, np.ndarray], eps: float = 1e-5
                     ) -> dict[str, BatchNorm]:
    """Guess ``{weight: BatchNorm}`` from PyTorch state_dict names and order: a weight with two
    or more dimensions, optionally its ``<prefix>.bias``, then ``<bn>.weight``, ``<bn>.bias``,
    ``<bn>.running_mean``, ``<bn>.running_var`` of its output-channel count."""
    names = list(tensors)
    out: dict[str, BatchNorm] = {}
    for i, name in enumerate(names):
        w = np.asarray(tensors[name])
        if w.ndim < 2 or not name.endswith("weight"):
            continue
        j, bias = i + 1, None
        own_bias = name[: -len("weight")] + "bias"
        if j < len(names) and names[j] == own_bias:
            bias, j = own_bias, j + 1
        quad = names[j:j + 4]
        if len(quad) < 4 or not quad[0].endswith(".weight"):
            continue
        prefix = quad[0][: -len("weight")]
        want = [prefix + s for s in ("weight", "bias", "running_mean", "running_var")]
        if quad != want or any(np.shape(tensors[q]) != (w.shape[0],) for q in quad):
            continue
        out[name] = BatchNorm(gamma=quad[0], beta=quad[1], mean=quad[2], var=quad[3], eps=eps,
                              bias=bias)
    return out


def fold_batch_norm(tensors: Mapping[str, np.ndarray], batch_norms: Mapping[str, BatchNorm]
                    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, str]]]:
    """Fold each batch norm into ``<w>_scaling`` (alpha) and the bias (delta).

    Returns the new tensors (BN tensors removed, ``<w>_scaling`` and the bias placed after the
    weight; an existing ``<w>_scaling`` is multiplied by alpha) and ``blocks`` for
    :attr:`nnr.EncodeConfig.blocks` (``{w: {"weight.ls": ..., "bias": ...}}``)."""
    src = as_float_dict(tensors)
    folded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    drop: set[str] = set()
    for weight, bn in batch_norms.items():
        _check_bn(src, weight, bn)
        var = src[bn.var].astype(np.float64)
        alpha = src[bn.gamma].astype(np.float64) / np.sqrt(var + bn.eps)
        bias = src[bn.bias].astype(np.float64) if bn.bias is not None else 0.0
        delta = (bias - src[bn.mean].astype(np.float64)) * alpha + src[bn.beta]
        ls = scaling_name(weight)
        if ls in src:
            alpha = alpha * src[ls]
        folded[weight] = (alpha.astype(np.float32), delta.astype(np.float32))
        drop |= set(bn.names) | {ls} | ({bn.bias} if bn.bias else set())
    out: dict[str, np.ndarray] = {}
    blocks: dict[str, dict[str, str]] = {}
    for name, arr in src.items():
        if name in drop:
            continue
        out[name] = arr
        if name in folded:
            bn = batch_norms[name]
            alpha, delta = folded[name]
            out[scaling_name(name)] = alpha
            out[bias_name(name, bn)] = delta
            blocks[name] = {"weight.ls": scaling_name(name), "bias": bias_name(name, bn)}
    return out, blocks


def _check_bn(src: Mapping[str, np.ndarray], weight: str, bn: BatchNorm) -> None:
    if weight not in src:
        raise ConfigError(f"batch-norm folding: no weight named {weight!r}")
    channels = np.shape(src[weight])[0]
    for name in bn.names + ((bn.bias,) if bn.bias else ()):
        if name not in src:
            raise ConfigError(f"batch-norm folding of {weight!r}: tensor {name!r} is missing")
        if np.shape(src[name]) != (channels,):
            raise ConfigError(f"batch-norm folding of {weight!r}: {name!r} must have shape "
                              f"({channels},), got {np.shape(src[name])}")
    if not bn.eps >= 0:
        raise ConfigError(f"batch-norm eps must be >= 0, got {bn.eps}")
    if np.any(src[bn.var] + bn.eps <= 0):
        raise ConfigError(f"batch-norm folding of {weight!r}: var + eps must be > 0")


def unfold_batch_norm(tensors: Mapping[str, np.ndarray], batch_norms: Mapping[str, BatchNorm],
                      *, scale_weight: bool = False) -> dict[str, np.ndarray]:
    """Give back the original tensor names of folded layers, so that the model runs as built.

    Per folded weight: beta = delta, mean = 0, var = 1 - eps (so that sqrt(var + eps) is 1),
    gamma = alpha; with ``scale_weight`` W is multiplied by alpha per output channel and
    gamma = 1 instead (NNCodec's unfold_bn followed by apply_lsa). A layer that had its own
    bias gets it back as zeros. Tensors keep their stream order; the BN tensors take the place
    of ``<w>_scaling``."""
    out: dict[str, np.ndarray] = {}
    taken: set[str] = set()
    for weight, bn in batch_norms.items():
        ls, bi = scaling_name(weight), bias_name(weight, bn)
        for n in (weight, ls, bi):
            if n not in tensors:
                raise ConfigError(f"unfolding batch norm of {weight!r}: tensor {n!r} is missing")
        taken |= {ls, bi}
    for name, arr in tensors.items():
        if name in taken:
            continue
        bn = batch_norms.get(name)
        if bn is None:
            out[name] = arr
            continue
        alpha = np.asarray(tensors[scaling_name(name)], np.float32)
        delta = np.asarray(tensors[bias_name(name, bn)], np.float32)
        w = np.asarray(arr, np.float32)
        if scale_weight:
            w = (w * alpha.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        out[name] = w
        if bn.bias is not None:
            out[bn.bias] = np.zeros_like(delta)
        out[bn.gamma] = np.ones_like(alpha) if scale_weight else alpha
        out[bn.beta] = delta
        out[bn.mean] = np.zeros_like(delta)
        out[bn.var] = np.full_like(delta, 1.0 - bn.eps)
    return out
