"""Encoding a Model with its topology, and decoding a stream back into a Model."""
from __future__ import annotations

from typing import Any, Mapping

import nnr
from nnr.adapters import _registry
from nnr.config import EncodeConfig
from nnr.model import Model

__all__ = ["encode_model", "decode_model", "prepare", "load", "save"]


def load(path: Any, format: str | None = None, **kwargs: Any) -> Model:
    """Read a model file with the adapter its suffix (or ``format``) names."""
    return _registry.for_path(path, format).load(path, **kwargs)


def save(model: Model, path: Any, format: str | None = None, **kwargs: Any) -> None:
    """Write ``model`` with the adapter the suffix of ``path`` (or ``format``) names."""
    _registry.for_path(path, format).save(model, path, **kwargs)


def prepare(model: Model, *, blocks: str | Mapping[str, Mapping[str, str]] | None = None,
            lossless: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tensors nnr codes and the encode options for ``model``: its topology (from its
    adapter, holding the tensors nnr cannot code), ``blocks`` (``"auto"``: the model's valid
    candidate blocks) and, with ``lossless``, ``raw_float=True`` (no blocks then)."""
    adapter = _registry.get(model.format)
    coded = model.codable_names()
    keep = set(coded)
    inline = [n for n in model.tensors if n not in keep]
    options: dict[str, Any] = {"topology": adapter.topology_for(model, inline)}
    if blocks == "auto":
        blocks = None if lossless else model.valid_blocks()
    if blocks:
        options["blocks"] = {w: dict(m) for w, m in blocks.items()}
    if lossless:
        options["raw_float"] = True
    return {n: model.tensors[n] for n in coded}, options


def encode_model(model: Model, config: EncodeConfig | None = None, *,
                 blocks: str | Mapping[str, Mapping[str, str]] | None = None,
                 lossless: bool = False, **options: Any) -> bytes:
    """Code ``model`` into one NNR bitstream whose NNR_TPL unit carries its topology, so that
    :func:`decode_model` gives the model back in its framework's form. ``blocks="auto"``
    codes each weight with its bias and batch-norm in NNR_PT_BLOCK units; ``lossless`` stores
    float tensors as NNR_PT_RAW_FLOAT (integers are always lossless)."""
    tensors, extra = prepare(model, blocks=blocks, lossless=lossless)
    return nnr.encode(tensors, config, **extra, **options)


def decode_model(data: bytes | bytearray | memoryview, *, format: str | None = None,
                 **kwargs: Any) -> Model:
    """Decode a stream into a Model; its adapter is chosen by the stream's topology (or by
    ``format``). Decomposed weights (``low_rank``) come back recomposed, ``W = G @ H``."""
    decoded = nnr.decode_stream(data, recompose=True, **kwargs)
    adapter = _registry.get(format) if format else _registry.for_topology(decoded.topology)
    return adapter.from_stream(decoded)
