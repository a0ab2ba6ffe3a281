"""Decoder-side post-processing (notes §6.2), in NNCodec's order: recompose decomposed weights
(W = G H), unfold folded batch norms, apply local scaling.

:func:`decode_model` decodes a stream and returns the model's own tensors; :func:`postprocess`
does the same for tensors that were already decoded (``nnr.decode``), given which weight each
``<w>_scaling`` / ``<w>_G`` / ``<w>_H`` belongs to (by NNCodec's names).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from nnr.errors import ConfigError
from nnr.reduction.batchnorm import BatchNorm, scaling_name, unfold_batch_norm
from nnr.reduction.lowrank import g_name, h_name, recompose

__all__ = ["postprocess", "apply_local_scaling", "recompose_all", "decode_model"]


def apply_local_scaling(tensors: Mapping[str, np.ndarray],
                        weights: list[str] | None = None) -> dict[str, np.ndarray]:
    """Multiply every row i of each weight by ``<w>_scaling[i]`` and drop the LS tensor
    (NNCodec's apply_lsa). ``weights``: which ones (default: every weight with a
    ``<w>_scaling`` tensor)."""
    if weights is None:
        weights = [n for n in tensors if scaling_name(n) in tensors]
    drop = {scaling_name(w) for w in weights}
    out = {}
    for name, arr in tensors.items():
        if name in drop:
            continue
        if name in weights:
            ls = np.asarray(tensors[scaling_name(name)], np.float32)
            w = np.asarray(arr, np.float32)
            if ls.shape != (w.shape[0],):
                raise ConfigError(f"{scaling_name(name)!r} {ls.shape} does not match the rows "
                                  f"of {name!r} {w.shape}")
            arr = (w * ls.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        out[name] = arr
    return out


def recompose_all(tensors: Mapping[str, np.ndarray],
                  shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Replace ``<w>_G`` / ``<w>_H`` by ``W = (G @ H).reshape(shapes[w])`` (at G's place)."""
    out = {}
    for name, arr in tensors.items():
        w = name[:-2] if name.endswith(("_G", "_H")) else None
        if w is None or w not in shapes:
            out[name] = arr
            continue
        if name == g_name(w):
            if h_name(w) not in tensors:
                raise ConfigError(f"{h_name(w)!r} is missing for {name!r}")
            out[w] = recompose(arr, tensors[h_name(w)], shapes[w])
    return out


def postprocess(tensors: Mapping[str, np.ndarray], *,
                shapes: Mapping[str, tuple[int, ...]] | None = None,
                batch_norms: Mapping[str, BatchNorm] | None = None,
                apply_ls: bool = True) -> dict[str, np.ndarray]:
    """Recompose (``shapes`` of the decomposed weights), unfold ``batch_norms`` (gamma = 1,
    alpha applied to W when ``apply_ls``), then apply the remaining local scaling."""
    out = recompose_all(tensors, shapes or {})
    if batch_norms:
        out = unfold_batch_norm(out, batch_norms, scale_weight=apply_ls)
    if apply_ls:
        out = apply_local_scaling(out)
    return out


def decode_model(data: bytes, *, batch_norms: Mapping[str, BatchNorm] | None = None,
                 apply_ls: bool = True, recompose: bool = True,
                 **decode_options) -> dict[str, np.ndarray]:
    """Decode a stream and post-process it: decomposed weights recomposed (their dimensions
    come from the stream), ``batch_norms`` unfolded, local scaling applied."""
    from nnr.decoder import decode_recomposed
    import nnr
    tensors = decode_recomposed(data, **decode_options) if recompose \
        else nnr.decode(data, **decode_options)
    return postprocess(tensors, batch_norms=batch_norms, apply_ls=apply_ls)
