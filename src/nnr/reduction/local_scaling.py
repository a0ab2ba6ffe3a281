"""Local scaling adaptation (LSA): one scale factor per output channel of a quantized weight,
coded as the ``weight.ls`` tensor ``<w>_scaling`` of the weight's NNR_PT_BLOCK unit; the
decoder multiplies row i of the reconstructed weight by ``ls[i]``.

Two ways to choose the factors:

- :func:`add_local_scaling` (no data): per row the least-squares scale between the weight W
  and its quantized reconstruction Q(W), ``s_i = <w_i, q_i> / <q_i, q_i>``;
- :func:`tune_local_scaling` (with a task loss, NNCodec's ``lsa``): the weights are replaced by
  Q(W) and frozen, and the scales (optionally also the biases) are trained.

Either way an existing ``<w>_scaling`` (alpha of a folded batch norm) is merged by
multiplication, so one LS tensor carries both.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import numpy as np

from nnr.config import EncodeConfig
from nnr.reduction._common import FineTune, TaskLoss, as_float_dict, weight_names
from nnr.reduction.batchnorm import BatchNorm, bias_name, scaling_name

__all__ = ["quantized", "fit_local_scaling", "add_local_scaling", "tune_local_scaling"]


def quantized(tensors: Mapping[str, np.ndarray], names: Iterable[str],
              config: EncodeConfig | None = None, **options: Any) -> dict[str, np.ndarray]:
    """``{name: Q(tensor)}``: what a decoder reconstructs for each of ``names`` when they are
    coded with ``config`` / ``options`` (coded and decoded, so it is exact)."""
    import nnr
    cfg = EncodeConfig.from_options(config, **options)
    cfg = dataclasses.replace(cfg, blocks=None, raw_float=False, low_rank=None,
                              performance_maps=None)
    subset = {n: np.asarray(tensors[n], np.float32) for n in names}
    if not subset:
        return {}
    dec = nnr.decode(nnr.encode(subset, cfg))
    return {n: np.asarray(dec[n], np.float32) for n in subset}


def fit_local_scaling(w: np.ndarray, w_hat: np.ndarray) -> np.ndarray:
    """Per output channel (row) the scale s minimising ``||w_i - s q_i||``; 1 for an all-zero
    row of ``w_hat``."""
    a = np.asarray(w, np.float64).reshape(w.shape[0], -1)
    q = np.asarray(w_hat, np.float64).reshape(a.shape)
    den = (q * q).sum(axis=1)
    num = (a * q).sum(axis=1)
    s = np.ones(a.shape[0])
    ok = den > 0
    s[ok] = num[ok] / den[ok]
    return s.astype(np.float32)


def _insert_ls(tensors: dict[str, np.ndarray], scales: Mapping[str, np.ndarray],
               blocks: Mapping[str, Mapping[str, str]] | None
               ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, str]]]:
    out: dict[str, np.ndarray] = {}
    for name, arr in tensors.items():
        if name.endswith("_scaling") and name[:-len("_scaling")] in scales:
            continue    # re-inserted after its weight
        out[name] = arr
        if name in scales:
            out[scaling_name(name)] = scales[name]
    new_blocks = {w: dict(m) for w, m in (blocks or {}).items()}
    for w in scales:
        new_blocks.setdefault(w, {})["weight.ls"] = scaling_name(w)
    return out, new_blocks


def add_local_scaling(tensors: Mapping[str, np.ndarray], config: EncodeConfig | None = None, *,
                      names: Iterable[str] | None = None,
                      blocks: Mapping[str, Mapping[str, str]] | None = None, **options: Any
                      ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, str]]]:
    """Data-free LSA for the weights ``names`` (default: every float tensor with two or more
    dimensions) under the quantization of ``config`` / ``options``.

    Returns the tensors with ``<w>_scaling`` after each weight (merged with an existing one) and
    ``blocks`` extended with ``weight.ls`` for :attr:`nnr.EncodeConfig.blocks`."""
    src = as_float_dict(tensors)
    names = [n for n in weight_names(src, names) if not n.endswith("_scaling")]
    q = quantized(src, names, config, **options)
    scales = {}
    for n in names:
        s = fit_local_scaling(src[n], q[n])
        old = src.get(scaling_name(n))
        scales[n] = (s * old).astype(np.float32) if old is not None else s
    return _insert_ls(src, scales, blocks)


def _torch_view(torch, params: Mapping[str, Any], frozen: Mapping[str, Any],
                batch_norms: Mapping[str, BatchNorm]) -> dict[str, Any]:
    """The model's own tensors: W = Q(W) * ls per row; folded BNs as identity-statistics BNs."""
    out: dict[str, Any] = {}
    skip = {scaling_name(w) for w in params if scaling_name(w) in params}
    skip |= {bias_name(w, bn) for w, bn in batch_norms.items()}
    for name, t in params.items():
        if name in skip:
            continue
        ls = params.get(scaling_name(name))
        if ls is not None:
            base = frozen.get(name, t)
            t = base * ls.reshape((-1,) + (1,) * (base.dim() - 1))
        out[name] = t
        bn = batch_norms.get(name)
        if bn is not None:
            delta = params[bias_name(name, bn)]
            if bn.bias is not None:
                out[bn.bias] = torch.zeros_like(delta)
            out[bn.gamma] = torch.ones_like(delta)
            out[bn.beta] = delta
            out[bn.mean] = torch.zeros_like(delta)
            out[bn.var] = torch.full_like(delta, 1.0 - bn.eps)
    return out


def tune_local_scaling(tensors: Mapping[str, np.ndarray], loss_fn: TaskLoss,
                       config: EncodeConfig | None = None, *, names: Iterable[str] | None = None,
                       blocks: Mapping[str, Mapping[str, str]] | None = None,
                       batch_norms: Mapping[str, BatchNorm] | None = None,
                       finetune: FineTune = FineTune(), train_biases: bool = False,
                       **options: Any
                       ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, str]], list[float]]:
    """LSA with training data: the weights ``names`` become their quantized reconstruction and
    stay frozen while their scales (initialised to the data-free fit, merged with a folded
    alpha) are trained on ``loss_fn`` (which sees the model's own tensor names: scales applied,
    folded batch norms given back as in :func:`~nnr.reduction.unfold_batch_norm`).
    ``train_biases`` also trains every 1-D tensor (NNCodec's fine-tuning of non-weights).

    Returns the tensors to code (weights as given, ``<w>_scaling`` tuned), the blocks, and the
    task loss per step."""
    from nnr.reduction.finetune import fine_tune
    from nnr.reduction._common import require_torch
    torch = require_torch("tune_local_scaling")
    batch_norms = dict(batch_norms or {})
    init, new_blocks = add_local_scaling(tensors, config, names=names, blocks=blocks, **options)
    wnames = [w for w, m in new_blocks.items() if "weight.ls" in m]
    q = quantized(init, wnames, config, **options)
    frozen = {w: torch.from_numpy(q[w]) for w in wnames}
    trainable = [scaling_name(w) for w in wnames]
    if train_biases:
        trainable += [n for n, a in init.items() if np.ndim(a) == 1 and n not in trainable
                      and np.asarray(a).dtype.kind == "f"]

    def task(params):
        return loss_fn(_torch_view(torch, params, frozen, batch_norms))

    tuned, history = fine_tune(init, task, trainable, finetune, tool="tune_local_scaling")
    return tuned, new_blocks, history
