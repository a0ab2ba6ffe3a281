"""Every unit of every NNCodec conformance stream: parse, compare with the manifest, re-write."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnr.bitstream import (
    NnrUnitType,
    ParsedUnit,
    PayloadType,
    StreamWriter,
    parse_stream,
    write_unit,
)
from nnr.bitstream.stream import StreamContext


def _vector_dir() -> Path | None:
    for d in (Path(__file__).resolve().parents[1] / "vectors", Path("/work/shared/vectors")):
        if (d / "manifest.json").is_file():
            return d
    return None


VECTORS = _vector_dir()
MANIFEST = json.loads((VECTORS / "manifest.json").read_text()) if VECTORS else {"vectors": []}
STREAMS = [(v, i, name) for v in MANIFEST["vectors"] for i, name in enumerate(v["streams"])]
pytestmark = pytest.mark.skipif(VECTORS is None, reason="conformance vectors not found")

NDU_FLAGS = ("node_id_present_flag", "device_id", "parameter_id", "put_node_depth",
             "parent_node_id_present_flag", "parent_node_id_type", "parent_device_id",
             "temporal_context_modeling_flag")


def ndu_summary(unit: ParsedUnit, expected: dict) -> dict:
    """The manifest's view of one parsed NDU header (keys as in ``expected``)."""
    h = unit.header
    got = {
        "topology_elem_ids": h.topology_elem_ids,
        "payload_type": f"NNR_PT_{PayloadType(h.nnr_compressed_data_unit_payload_type).name}",
        "compressed_parameter_types": h.compressed_parameter_types,
        "tensor_dimensions": h.tensor_dimensions,
        "dq_flag": h.dq_flag,
        "codebook_present_flag": h.codebook_present_flag,
        "entry_points": len(h.cabac_entry_point_list),
    }
    if "scan_order" in expected:
        got["scan_order"] = h.scan_order
    got.update({k: getattr(h, k) for k in NDU_FLAGS if k in expected})
    return got


def load(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


@pytest.mark.parametrize("vector, step, name", STREAMS, ids=[s[2] for s in STREAMS])
def test_vector_units_match_manifest(vector: dict, step: int, name: str) -> None:
    data = load(name)
    ctx = StreamContext()
    units = parse_stream(data, ctx)
    assert ctx.general_profile_idc == vector["profile"]
    assert [[u.type_name, u.size, 2 + 2 * u.size_flag] for u in units] == \
        vector["stream_units"][step]
    assert units[-1].end == len(data)
    ndus = [u for u in units if u.unit_type == NnrUnitType.NDU]
    assert len(ndus) == len(vector["stream_ndus"][step])
    for unit, expected in zip(ndus, vector["stream_ndus"][step]):
        assert ndu_summary(unit, expected) == expected
        assert unit.payload_start < unit.payload_end == unit.end
        if "scan_order" not in expected:
            assert unit.header.scan_order == 0


@pytest.mark.parametrize("vector, step, name", STREAMS, ids=[s[2] for s in STREAMS])
def test_vector_units_rewrite_identically(vector: dict, step: int, name: str) -> None:
    data = load(name)
    writer = StreamWriter()
    for unit in parse_stream(data):
        if unit.unit_type == NnrUnitType.NDU:
            out = writer.add(unit.unit_type, unit.header, unit.payload_bytes(data))
        else:
            out = writer.add(unit.unit_type, unit.header, unit.payload)
        assert out == unit.unit_bytes(data), f"unit {unit.index} ({unit.type_name})"
    assert writer.getvalue() == data


def test_vector_headers_rewrite_without_payload() -> None:
    """The header bytes alone (size form as in the stream) are reproduced."""
    count = 0
    for _, _, name in STREAMS:
        data = load(name)
        ctx = StreamContext()
        for unit in parse_stream(data):
            if unit.unit_type == NnrUnitType.NDU:
                payload_len = unit.payload_end - unit.payload_start
                out = write_unit(5, unit.header, bytes(payload_len), ctx=ctx,
                                 size_flag=unit.size_flag)
                assert out[:unit.header_end - unit.offset] == \
                    data[unit.offset:unit.header_end]
                count += 1
            ctx.update(unit.unit_type, unit.header, unit.payload)
    assert count == sum(len(s) for v in MANIFEST["vectors"] for s in v["stream_ndus"])


def test_vector_count() -> None:
    total = sum(len(parse_stream(load(name))) for _, _, name in STREAMS)
    assert total == sum(len(s) for v in MANIFEST["vectors"] for s in v["stream_units"])
