"""ONNX models (``.onnx``, with or without external data files).

Weights are taken from initializers and from ``Constant`` nodes (as paddle2onnx writes them,
e.g. the PP-OCR models), in the main graph and in subgraphs (``If``/``Loop``/``Scan``). Tensors
of at least ``min_elements`` elements that nnr can code are coded; the others stay in the
graph. The topology (storage format 2) is the serialized ``ModelProto`` with the coded tensors
emptied (their name, dims and data type kept), deflated: a stream made from an ONNX model
decodes on its own into a complete, runnable ONNX model.

:func:`compress_initializers` keeps an ONNX file but replaces its large tensors by one uint8
initializer holding an NNR stream; :func:`restore` undoes it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nnr.adapters._common import (bf16_to_f32, f32_to_bf16, pack_topology, require,
                                  restore_dtype, unpack_topology)
from nnr.bitstream.enums import TopologyStorageFormat
from nnr.codec import DecodedStream
from nnr.encoder import Topology
from nnr.errors import ConfigError, NonConformingBitstreamError
from nnr.model import Model, codable

__all__ = ["load", "save", "to_tensors", "from_tensors", "topology_for", "from_stream",
           "compress_initializers", "restore", "MIN_ELEMENTS"]

NAME = "onnx"
#: Tensors with fewer elements stay in the graph (shape constants, epsilons, scalars).
MIN_ELEMENTS = 16
#: metadata_props keys nnr adds (and removes again).
EXTERNAL_KEY = "nnr.external_data"
COMPRESSED_KEY = "nnr.compressed"

# TensorProto.DataType -> numpy dtype name of the tensors nnr codes.
_CODED_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
                7: "int64", 9: "bool", 10: "float16", 11: "float64", 12: "uint32",
                13: "uint64", 16: "bfloat16"}
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                "uint64_data", "string_data", "external_data")


def _onnx() -> Any:
    return require("onnx", "onnx", "ONNX")


@dataclass
class _Site:
    """A place in the model that holds a tensor: an initializer or a Constant's value."""

    name: str
    tensor: Any   # onnx.TensorProto (a reference into the ModelProto)


def _graph_sites(graph: Any, seen: dict[str, int]) -> Iterator[_Site]:
    onnx = _onnx()

    def unique(name: str) -> str:
        n = seen.get(name, 0)
        seen[name] = n + 1
        return name if n == 0 else f"{name}#{n}"

    for init in graph.initializer:
        yield _Site(unique(init.name), init)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    yield _Site(unique(node.output[0]), attr.t)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graph_sites(attr.g, seen)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graph_sites(g, seen)


def _sites(proto: Any) -> Iterator[_Site]:
    """Every tensor site of the model in a fixed order, with names unique in the model."""
    return _graph_sites(proto.graph, {})


def _to_array(tensor: Any) -> tuple[np.ndarray, str] | None:
    """(array, dtype name) of a tensor nnr may code, None for any other."""
    dtype = _CODED_TYPES.get(tensor.data_type)
    if dtype is None or tensor.data_location == 1 or tensor.segment.ByteSize():
        return None
    if dtype == "bfloat16":
        if tensor.raw_data:
            bits = np.frombuffer(tensor.raw_data, "<u2")
        else:
            bits = np.asarray(tensor.int32_data, dtype=np.uint16)
        return bf16_to_f32(bits).reshape(tuple(tensor.dims)), dtype
    from onnx import numpy_helper
    array = numpy_helper.to_array(tensor)
    return np.asarray(array).astype(np.dtype(dtype), copy=False), dtype


def _clear(tensor: Any) -> None:
    for f in _DATA_FIELDS:
        tensor.ClearField(f)
    tensor.data_location = 0


def _fill(tensor: Any, array: np.ndarray) -> None:
    """Put ``array`` into ``tensor`` (as raw_data in the tensor's data type)."""
    dtype = _CODED_TYPES.get(tensor.data_type)
    if dtype is None:
        raise NonConformingBitstreamError(f"tensor of ONNX data type {tensor.data_type} "
                                          "cannot come from the stream")
    if int(np.prod(tuple(tensor.dims), dtype=np.int64)) != array.size:
        raise NonConformingBitstreamError(
            f"decoded tensor of {array.size} elements for dims {list(tensor.dims)}")
    _clear(tensor)
    if dtype == "bfloat16":
        tensor.raw_data = f32_to_bf16(array).astype("<u2").tobytes()
    else:
        target = np.dtype(dtype).newbyteorder("<")
        tensor.raw_data = np.ascontiguousarray(restore_dtype(array, dtype), dtype=target).tobytes()


def _roles(proto: Any, names: set[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Roles from Conv/ConvTranspose/Gemm/MatMul and BatchNormalization inputs; a
    BatchNormalization that reads a Conv/Gemm output joins that weight's block."""
    roles: dict[str, str] = {}
    blocks: dict[str, dict[str, str]] = {}
    producer: dict[str, str] = {}
    for node in proto.graph.node:
        ins = list(node.input)
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(ins) > 1 \
                and ins[1] in names:
            roles[ins[1]] = "weight"
            blocks.setdefault(ins[1], {})
            if len(ins) > 2 and ins[2] in names:
                roles[ins[2]] = "bias"
                blocks[ins[1]]["bias"] = ins[2]
            producer[node.output[0]] = ins[1]
        elif node.op_type == "BatchNormalization" and len(ins) >= 5:
            bn = {r: n for r, n in zip(("bn.gamma", "bn.beta", "bn.mean", "bn.var"), ins[1:5])
                  if n in names}
            roles.update({n: r for r, n in bn.items()})
            weight = producer.get(ins[0])
            if weight is not None and len(bn) == 4:
                blocks[weight].update(bn)
    return roles, {w: m for w, m in blocks.items() if m}


def to_tensors(proto: Any, *, min_elements: int = MIN_ELEMENTS) -> Model:
    """A Model of an ``onnx.ModelProto`` (with its data loaded): the tensors to code, and as
    topology the model without them."""
    onnx = _onnx()
    stripped = onnx.ModelProto()
    stripped.CopyFrom(proto)
    model = Model(format=NAME)
    for site in _sites(stripped):
        got = _to_array(site.tensor)
        if got is None or got[0].size < max(1, min_elements) or not codable(got[0]):
            continue
        model.tensors[site.name], model.dtypes[site.name] = got
        _clear(site.tensor)
    model.roles, model.blocks = _roles(stripped, set(model.tensors))
    model.metadata["graph"] = stripped
    return model


def _has_external(proto: Any) -> bool:
    return any(site.tensor.data_location == 1 for site in _sites(proto))


def load(path: str | os.PathLike[str], *, min_elements: int = MIN_ELEMENTS, **_: Any) -> Model:
    """Read an ONNX file and the external data files it names."""
    onnx = _onnx()
    try:
        proto = onnx.load(str(path), load_external_data=False)
        external = _has_external(proto)
        if external:
            from onnx.external_data_helper import load_external_data_for_model
            load_external_data_for_model(proto, str(Path(path).resolve().parent))
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ConfigError(f"cannot read '{path}' as ONNX: {exc}") from None
    except Exception as exc:  # protobuf's DecodeError
        raise ConfigError(f"cannot read '{path}' as ONNX: {type(exc).__name__}: {exc}") \
            from None
    model = to_tensors(proto, min_elements=min_elements)
    if external:
        model.metadata["external_data"] = True
    return model


def _graph_of(model: Model) -> Any:
    graph = model.metadata.get("graph")
    if graph is not None:
        return graph
    if model.topology is None or int(model.topology.storage_format) != \
            TopologyStorageFormat.ONNX:
        raise ConfigError("this model has no ONNX graph (it was not coded from an ONNX model); "
                          "decode it to a tensor format (.npz, .safetensors, .pt) instead")
    onnx = _onnx()
    try:
        return onnx.ModelProto.FromString(unpack_topology(model.topology))
    except Exception as exc:  # protobuf's DecodeError
        raise NonConformingBitstreamError(f"the ONNX topology does not parse: {exc}") from None


def _set_external_flag(proto: Any, on: bool) -> None:
    props = [p for p in proto.metadata_props if p.key != EXTERNAL_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
    if on:
        entry = proto.metadata_props.add()
        entry.key, entry.value = EXTERNAL_KEY, "1"


def from_tensors(model: Model) -> Any:
    """The complete ``onnx.ModelProto``: the model's graph with its tensors filled in."""
    onnx = _onnx()
    proto = onnx.ModelProto()
    proto.CopyFrom(_graph_of(model))
    _set_external_flag(proto, False)
    missing = set(model.tensors)
    for site in _sites(proto):
        if site.name in model.tensors:
            _fill(site.tensor, model.tensors[site.name])
            missing.discard(site.name)
    if missing:
        raise ConfigError(f"tensors not in the ONNX graph: {', '.join(sorted(missing)[:5])}")
    return proto


def save(model: Model, path: str | os.PathLike[str], *, external_data: bool | None = None,
         **_: Any) -> None:
    """Write the ONNX model; with external data (``<name>.data`` beside it) when the original
    had it, when asked, or when it exceeds protobuf's 2 GiB."""
    onnx = _onnx()
    proto = from_tensors(model)
    if external_data is None:
        external_data = bool(model.metadata.get("external_data")) or proto.ByteSize() > (1 << 31)
    if external_data:
        location = Path(path).name + ".data"
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))


def topology_for(model: Model, inline: list[str]) -> Topology:
    if inline:
        raise ConfigError(f"ONNX tensors nnr cannot code must stay in the graph: {inline[:3]}")
    onnx = _onnx()
    graph = onnx.ModelProto()
    graph.CopyFrom(_graph_of(model))
    for site in _sites(graph):
        if site.name in model.tensors:
            _clear(site.tensor)
    _set_external_flag(graph, bool(model.metadata.get("external_data")))
    return pack_topology(TopologyStorageFormat.ONNX, graph.SerializeToString())


def from_stream(decoded: DecodedStream) -> Model:
    model = Model(format=NAME, topology=decoded.topology)
    proto = _graph_of(model)
    model.metadata["external_data"] = any(p.key == EXTERNAL_KEY for p in proto.metadata_props)
    _set_external_flag(proto, False)
    model.metadata["graph"] = proto
    for site in _sites(proto):
        if site.name in decoded.tensors:
            dtype = _CODED_TYPES.get(site.tensor.data_type, "float32")
            array = restore_dtype(decoded.tensors[site.name], dtype)
            model.tensors[site.name] = array.reshape(tuple(site.tensor.dims))
            model.dtypes[site.name] = dtype
    extra = set(decoded.tensors) - set(model.tensors)
    if extra:
        raise NonConformingBitstreamError(
            f"the stream has tensors the ONNX graph lacks: {', '.join(sorted(extra)[:5])}")
    model.roles, model.blocks = _roles(proto, set(model.tensors))
    return model


# ------------------------------------------------------------- NNR tensors inside an ONNX file

def compress_initializers(proto: Any, *, min_elements: int = 1024, name: str = "nnr.stream",
                          blocks: str | dict | None = None, lossless: bool = False,
                          **options: Any) -> Any:
    """A copy of ``proto`` whose tensors of at least ``min_elements`` elements (initializers
    and Constant values) are emptied and coded into one NNR stream, stored as the uint8
    initializer ``name``; metadata_props ``nnr.compressed`` lists them. Run :func:`restore`
    before inference. ``options`` are :func:`nnr.encode`'s."""
    import nnr
    from nnr.adapters._coding import prepare
    onnx = _onnx()
    if any(p.key == COMPRESSED_KEY for p in proto.metadata_props):
        raise ConfigError("the model already holds NNR-compressed tensors")
    model = to_tensors(proto, min_elements=min_elements)
    tensors, extra = prepare(model, blocks=blocks, lossless=lossless)
    extra.pop("topology")
    data = nnr.encode(tensors, **extra, **options)
    out = model.metadata["graph"]
    blob = out.graph.initializer.add()
    blob.name, blob.data_type = name, onnx.TensorProto.UINT8
    blob.dims.append(len(data))
    blob.raw_data = data
    entry = out.metadata_props.add()
    entry.key = COMPRESSED_KEY
    entry.value = json.dumps({"stream": name, "tensors": list(tensors)})
    return out


def restore(proto: Any) -> Any:
    """A copy of a :func:`compress_initializers` model with its tensors decoded back."""
    import nnr
    onnx = _onnx()
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    entry = next((p for p in out.metadata_props if p.key == COMPRESSED_KEY), None)
    if entry is None:
        return out
    info = json.loads(entry.value)
    blobs = [i for i in out.graph.initializer if i.name == info["stream"]]
    if len(blobs) != 1:
        raise ConfigError(f"the model has no initializer {info['stream']!r} with the stream")
    decoded = nnr.decode(blobs[0].raw_data)
    out.graph.initializer.remove(blobs[0])
    props = [p for p in out.metadata_props if p.key != COMPRESSED_KEY]
    del out.metadata_props[:]
    out.metadata_props.extend(props)
    for site in _sites(out):
        if site.name in decoded and site.name in info["tensors"]:
            _fill(site.tensor, decoded[site.name])
    return out
