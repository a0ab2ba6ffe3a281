"""Unit framing, dispatch, unit-order rules and located errors."""
from __future__ import annotations

import numpy as np
import pytest

from nnr.bitstream import (
    CompressedDataUnitHeader,
    ModelParameterSet,
    NnrUnitType,
    PayloadType,
    StartUnitHeader,
    StreamContext,
    StreamWriter,
    TopologyPayload,
    TopologyUnitHeader,
    frame_unit,
    iter_units,
    parse_stream,
    raw_float_payload,
    raw_float_tensor,
    write_unit,
)
from nnr.errors import (
    BitstreamError,
    ConfigError,
    NonConformingBitstreamError,
    TruncatedBitstreamError,
    UnsupportedFeatureError,
)


def ndu_header(name: str = "w", dims=(4, 3), **kw) -> CompressedDataUnitHeader:
    return CompressedDataUnitHeader(topology_elem_id=name, tensor_dimensions=list(dims), **kw)


def small_stream(profile: int = 1, payload: bytes = b"\x01\x02\x03") -> bytes:
    w = StreamWriter()
    w.add(NnrUnitType.STR, StartUnitHeader(profile))
    w.add(NnrUnitType.MPS, None, ModelParameterSet())
    w.add(NnrUnitType.TPL, TopologyUnitHeader(), TopologyPayload())
    w.add(NnrUnitType.NDU, ndu_header(node_id_present_flag=profile, device_id=0,
                                      parameter_id=0, put_node_depth=0) if profile
          else ndu_header(), payload)
    return w.getvalue()


def test_parse_small_stream_fields() -> None:
    data = small_stream()
    units = parse_stream(data)
    assert [u.unit_type for u in units] == [0, 1, 3, 5]
    assert [u.offset for u in units] == [0, 4, 12, 18]
    assert [u.index for u in units] == [0, 1, 2, 3]
    ndu = units[3]
    assert ndu.end == len(data) and ndu.payload_end == len(data)
    assert ndu.payload_bytes(data) == b"\x01\x02\x03"
    assert ndu.dims == [4, 3] and ndu.size_flag == 0
    assert ndu.independently_decodable_flag == 1 and ndu.partial_data_counter is None
    assert ndu.header_end == ndu.payload_start
    assert units[1].payload == ModelParameterSet() and units[1].header is None
    ctx = StreamContext()
    list(iter_units(data, ctx))
    assert ctx.general_profile_idc == 1 and ctx.mps == ModelParameterSet()


def test_partial_data_counter_and_flags() -> None:
    unit = write_unit(NnrUnitType.TPL, TopologyUnitHeader(), TopologyPayload(),
                      independently_decodable_flag=0, partial_data_counter=200)
    units = parse_stream(write_unit(0, StartUnitHeader(0)) + unit)
    assert units[1].partial_data_counter == 200
    assert units[1].independently_decodable_flag == 0
    assert units[1].unit_bytes(write_unit(0, StartUnitHeader(0)) + unit) == unit


@pytest.mark.parametrize("body_len, flag", [
    (32765, 0), (32766, 1), (40000, 1), (0, 0),
])
def test_size_form_choice(body_len: int, flag: int) -> None:
    unit = frame_unit(b"\x00" * body_len)
    assert unit[0] >> 7 == flag
    assert len(unit) == body_len + 2 + 2 * flag
    size = int.from_bytes(unit[:2 + 2 * flag], "big") & ((1 << (15 + 16 * flag)) - 1)
    assert size == len(unit)


def test_forced_size_forms() -> None:
    assert frame_unit(b"\x08", size_flag=1) == bytes([0x80, 0, 0, 5, 8])
    with pytest.raises(ConfigError):
        frame_unit(b"\x00" * 32766, size_flag=0)
    long_ndu = write_unit(NnrUnitType.NDU, ndu_header(), bytes(40000))
    assert long_ndu[0] & 0x80
    data = write_unit(0, StartUnitHeader(0)) + write_unit(1, None, ModelParameterSet()) + long_ndu
    unit = parse_stream(data)[2]
    assert unit.size == len(long_ndu) and unit.size_flag == 1 and unit.payload_start == 12 + len(long_ndu) - 40000


def test_raw_float_payload() -> None:
    t = np.arange(12, dtype=np.float32).reshape(4, 3) - 5.5
    hdr = ndu_header(nnr_compressed_data_unit_payload_type=PayloadType.RAW_FLOAT)
    data = (write_unit(0, StartUnitHeader(0)) + write_unit(1, None, ModelParameterSet())
            + write_unit(5, hdr, raw_float_payload(t)))
    unit = parse_stream(data)[2]
    assert np.array_equal(raw_float_tensor(data, unit), t)
    bad = (write_unit(0, StartUnitHeader(0)) + write_unit(1, None, ModelParameterSet())
           + write_unit(5, hdr, raw_float_payload(t)[:-4]))
    with pytest.raises(NonConformingBitstreamError):
        parse_stream(bad)


def test_out_of_band_dims_in_stream() -> None:
    hdr = CompressedDataUnitHeader(topology_elem_id="w", input_parameters_present_flag=0,
                                   cabac_unary_length_flag=0, cabac_unary_length_minus1=9)
    ctx = StreamContext(dims_hint=lambda h: {"w": [2, 2]}[h.topology_elem_id])
    w = StreamWriter(ctx)
    w.add(0, StartUnitHeader(0))
    w.add(1, None, ModelParameterSet())
    w.add(5, hdr, b"\x00")
    data = w.getvalue()
    units = parse_stream(data, dims_hint={"w": [2, 2]}.get("w"))
    assert units[2].header == hdr and units[2].dims == [2, 2]
    with pytest.raises(UnsupportedFeatureError, match="unit 2"):
        parse_stream(data)


# --- errors -----------------------------------------------------------------------------------
def test_truncated_everywhere() -> None:
    data = small_stream()
    boundaries = {u.offset for u in parse_stream(data)}
    for cut in range(1, len(data)):
        if cut in boundaries:
            parse_stream(data[:cut])   # a shorter but complete stream
            continue
        with pytest.raises(TruncatedBitstreamError) as exc:
            parse_stream(data[:cut])
        assert exc.value.unit_index is not None and exc.value.offset is not None
    with pytest.raises(TruncatedBitstreamError):
        parse_stream(b"")


def test_truncated_error_names_the_unit() -> None:
    data = small_stream()
    with pytest.raises(TruncatedBitstreamError) as exc:
        parse_stream(data[:-1])
    assert exc.value.unit_index == 3 and exc.value.offset == 18
    assert "unit 3" in str(exc.value) and "byte 18" in str(exc.value)


def test_unit_size_too_small_for_content() -> None:
    data = bytearray(small_stream())
    data[13] -= 1            # TPL unit size 6 -> 5: the NUL moves past the unit end ...
    with pytest.raises(BitstreamError) as exc:
        parse_stream(bytes(data))
    assert exc.value.unit_index is not None
    mps = bytearray(write_unit(1, None, ModelParameterSet()))
    mps[1] -= 1              # MPS payload needs 8 bytes
    with pytest.raises(NonConformingBitstreamError, match="unit 1"):
        parse_stream(write_unit(0, StartUnitHeader(0)) + bytes(mps[:-1]))


def test_unit_size_too_large_for_content() -> None:
    body = write_unit(1, None, ModelParameterSet())[2:] + b"\x00"
    with pytest.raises(NonConformingBitstreamError, match="NNR_MPS"):
        parse_stream(write_unit(0, StartUnitHeader(0)) + frame_unit(body))
    with pytest.raises(NonConformingBitstreamError):
        parse_stream(frame_unit(bytes([0x02, 1, 0])))   # STR with a trailing byte


@pytest.mark.parametrize("size", [0, 1, 2])
def test_unit_size_smaller_than_header(size: int) -> None:
    with pytest.raises(NonConformingBitstreamError) as exc:
        parse_stream(write_unit(0, StartUnitHeader(0)) + bytes([0, size, 0x06]))
    assert exc.value.unit_index == 1 and exc.value.offset == 4


def test_size_beyond_end_of_data() -> None:
    with pytest.raises(TruncatedBitstreamError):
        parse_stream(write_unit(0, StartUnitHeader(0)) + bytes([0, 50, 0x06]))
    with pytest.raises(TruncatedBitstreamError):
        parse_stream(bytes([0x80, 0, 0]))   # 4-byte size field cut


@pytest.mark.parametrize("unit_type", [7, 20, 63])
def test_reserved_unit_type(unit_type: int) -> None:
    unit = frame_unit(bytes([unit_type << 2 | 2]))
    with pytest.raises(NonConformingBitstreamError) as exc:
        parse_stream(write_unit(0, StartUnitHeader(0)) + unit)
    assert exc.value.unit_type == f"reserved({unit_type})"
    with pytest.raises(ConfigError):
        write_unit(unit_type)


def test_unit_order_rules() -> None:
    s = write_unit(0, StartUnitHeader(0))
    m = write_unit(1, None, ModelParameterSet())
    n = write_unit(5, ndu_header(), b"\x00")
    parse_stream(s + m + n + m + n)           # a new MPS after an NDU is fine
    for bad, what in [(m, "first unit"), (s + s + m, "NNR_STR"), (s + m + m + n, "more than one"),
                      (s + n, "before any NNR_MPS")]:
        with pytest.raises(NonConformingBitstreamError, match=what):
            parse_stream(bad)


def test_unsupported_profile() -> None:
    with pytest.raises(UnsupportedFeatureError):
        parse_stream(write_unit(0, StartUnitHeader(2)))


def test_write_unit_checks_types() -> None:
    with pytest.raises(ConfigError):
        write_unit(NnrUnitType.STR, None)
    with pytest.raises(ConfigError):
        write_unit(NnrUnitType.MPS, StartUnitHeader(0), ModelParameterSet())
    with pytest.raises(ConfigError):
        write_unit(NnrUnitType.TPL, TopologyUnitHeader(), ModelParameterSet())
    with pytest.raises(ConfigError):
        write_unit(NnrUnitType.STR, StartUnitHeader(0), b"payload")


def test_stream_writer_tracks_context() -> None:
    w = StreamWriter()
    w.add(0, StartUnitHeader(1))
    w.add(1, None, ModelParameterSet(mps_parent_signalling_enabled_flag=1))
    hdr = ndu_header(node_id_present_flag=1, device_id=0, parameter_id=3, put_node_depth=2,
                     parent_node_id_present_flag=1, parent_node_id_type=0, parent_device_id=0,
                     temporal_context_modeling_flag=1)
    w.add(5, hdr, b"\xaa")
    assert w.ctx.mps_parent_signalling_enabled_flag == 1
    units = parse_stream(w.getvalue())
    assert units[2].header == hdr
