"""Unit headers and payloads: pinned bytes, §4.14 example, round trips, syntax errors."""
from __future__ import annotations

import hashlib

import pytest

from nnr.bitstream import (
    AggregatePayload,
    AggregateUnitHeader,
    BitReader,
    BitWriter,
    CabacEntryPoint,
    CompressedDataUnitHeader,
    DecompositionPerformanceMap,
    IntegerCodebook,
    LayerParameterSet,
    LayerParameterSetHeader,
    ModelParameterSet,
    NnrUnitType,
    PayloadType,
    PruningPerformanceMap,
    QuantizationPayload,
    QuantizationUnitHeader,
    SparsificationPerformanceMap,
    StartUnitHeader,
    StreamContext,
    TopologyPayload,
    TopologyStorageFormat,
    TopologyUnitHeader,
    UnificationPerformanceMap,
    num_block_rows_minus1,
    parse_stream,
    write_unit,
)
from nnr.bitstream.units.compressed_data import (
    read_entry_point_list,
    read_topology_elements_ids_list,
    write_entry_point_list,
    write_topology_elements_ids_list,
)
from nnr.errors import (
    ConfigError,
    NonConformingBitstreamError,
    TruncatedBitstreamError,
    UnsupportedFeatureError,
)

P0 = StreamContext(general_profile_idc=0)
P1 = StreamContext(general_profile_idc=1)
P1_PARENT = StreamContext(general_profile_idc=1, mps_parent_signalling_enabled_flag=1)

EXAMPLE_414 = bytes.fromhex(
    "03da" "16" "09" "636f6e76312e77656967687400" "d0 41 c1 a4 22 20 e0 c2 a1 39 6b 3f c0"
    .replace(" ", ""))


def roundtrip(obj, ctx=None, *args, **kw):
    """Write ``obj``, read it back with the same arguments; return (copy, bytes)."""
    w = BitWriter()
    obj.write(w, ctx, *args, **kw)
    data = w.getvalue()
    r = BitReader(data)
    back = type(obj).read(r, ctx, *args, **kw)
    assert r.bits_left == 0
    return back, data


# --- pinned bytes -------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [0, 1])
def test_start_unit_bytes(profile: int) -> None:
    unit = write_unit(NnrUnitType.STR, StartUnitHeader(profile))
    assert unit == bytes([0x00, 0x04, 0x02, profile])
    assert parse_stream(unit)[0].header == StartUnitHeader(profile)


@pytest.mark.parametrize("ctx", [P0, P1])
def test_mps_bytes(ctx: StreamContext) -> None:
    unit = write_unit(NnrUnitType.MPS, None, ModelParameterSet(), ctx=ctx)
    assert unit == bytes.fromhex("0008068100400080")
    stream = write_unit(NnrUnitType.STR, StartUnitHeader(ctx.general_profile_idc)) + unit
    assert parse_stream(stream)[1].payload == ModelParameterSet()


def test_tpl_bytes() -> None:
    unit = write_unit(NnrUnitType.TPL, TopologyUnitHeader(), TopologyPayload.from_text(""))
    assert unit == bytes.fromhex("00060e000000")
    assert TopologyPayload().topology_data == b"\0"


def test_nncodec_file_prefix() -> None:
    for profile in (0, 1):
        stream = (write_unit(0, StartUnitHeader(profile))
                  + write_unit(1, None, ModelParameterSet(), ctx=StreamContext(profile))
                  + write_unit(3, TopologyUnitHeader(), TopologyPayload()))
        assert stream.hex() == f"0004020{profile}" "0008068100400080" "00060e000000"
        units = parse_stream(stream)
        assert units[2].payload.text() == ""


def test_ndu_header_example_414() -> None:
    r = BitReader(EXAMPLE_414, 3)
    h = CompressedDataUnitHeader.read(r, P1)
    assert r.byte_position == len(EXAMPLE_414) and r.bits_left == 0
    assert h == CompressedDataUnitHeader(
        nnr_compressed_data_unit_payload_type=PayloadType.FLOAT,
        topology_elem_id="conv1.weight", node_id_present_flag=1, device_id=0, parameter_id=0,
        put_node_depth=0, dq_flag=1, cabac_unary_length_flag=1, tensor_dimensions=[16, 8, 3, 3],
        cabac_unary_length_minus1=10, first_tensor_dimension_shift=0, scan_order=1,
        cabac_entry_point_list=[CabacEntryPoint(cabac_offset=57, dq_state=3,
                                                bit_offset_delta=3711)])
    assert h.codebook_present_flag == 0 and h.count_tensor_dimensions == 4
    assert h.cabac_entry_point_list[0].packed() == (3711 << 11) | (57 << 3) | 3
    w = BitWriter()
    h.write(w, P1)
    assert w.getvalue() == EXAMPLE_414[3:]
    payload = bytes(986 - len(EXAMPLE_414))
    assert write_unit(NnrUnitType.NDU, h, payload, ctx=P1) == EXAMPLE_414 + payload


# --- NDU header round trips ----------------------------------------------------------------
def ndu(**kw) -> CompressedDataUnitHeader:
    base = dict(topology_elem_id="w", tensor_dimensions=[16, 8])
    base.update(kw)
    return CompressedDataUnitHeader(**base)


@pytest.mark.parametrize("ctx, header", [
    (P0, ndu()),
    (P0, ndu(nnr_compressed_data_unit_payload_type=PayloadType.INT, dq_flag=1)),
    (P0, ndu(nnr_compressed_data_unit_payload_type=PayloadType.RAW_FLOAT,
             tensor_dimensions=[3])),
    (P0, ndu(tensor_dimensions=[80, 7], scan_order=2, dq_flag=1, cabac_entry_point_list=[
        CabacEntryPoint(1, 7, 5000), CabacEntryPoint(255, 0, 4000),
        CabacEntryPoint(0, 3, 4100), CabacEntryPoint(12, 2, 0)])),
    (P0, ndu(tensor_dimensions=[24, 5], scan_order=1, cabac_entry_point_list=[
        CabacEntryPoint(3, 0, 0), CabacEntryPoint(4, 0, 1 << 20)])),
    (P0, ndu(codebook=IntegerCodebook([-7, -3, 0, 1, 9], cb_zero_offset=2, codebook_egk=1))),
    (P0, ndu(codebook=IntegerCodebook([5], cb_zero_offset=0))),
    (P0, ndu(nnr_decompressed_data_format=9, cabac_unary_length_minus1=3)),
    (P0, ndu(cabac_unary_length_flag=0, cabac_unary_length_minus1=9)),
    (P0, ndu(tensor_dimensions=[], cabac_unary_length_minus1=255)),
    (P0, ndu(tensor_dimensions=[1 << 30, 2, 3, 4, 5])),
    (P1, ndu(node_id_present_flag=1, device_id=3, parameter_id=77, put_node_depth=2,
             first_tensor_dimension_shift=5)),
    (P1, ndu(nnr_compressed_data_unit_payload_type=PayloadType.BLOCK, topology_elem_id=None,
             topology_elem_id_list=["c.weight", "c.weight_scaling", "c.bias"],
             compressed_parameter_types=0b1010, tensor_dimensions=[24, 8, 3, 3], scan_order=1,
             dq_flag=1, cabac_entry_point_list=[CabacEntryPoint(9, 1, 77),
                                                CabacEntryPoint(9, 6, 70)])),
    (P1_PARENT, ndu(node_id_present_flag=1, device_id=0, parameter_id=4, put_node_depth=3,
                    parent_node_id_present_flag=1, parent_node_id_type=0,
                    temporal_context_modeling_flag=1, parent_device_id=0)),
    (P1_PARENT, ndu(parent_node_id_present_flag=1, parent_node_id_type=0, parent_device_id=2,
                    parameter_id=9, put_node_depth=4)),
    (P1_PARENT, ndu(parent_node_id_present_flag=1, parent_node_id_type=1,
                    parent_node_payload_sha256=hashlib.sha256(b"parent").digest())),
    (P1_PARENT, ndu(node_id_present_flag=1, device_id=1, parameter_id=0, put_node_depth=0,
                    parent_node_id_present_flag=1, parent_node_id_type=2,
                    temporal_context_modeling_flag=1,
                    parent_node_payload_sha512=hashlib.sha512(b"parent").digest())),
    (P1_PARENT, ndu(parent_node_id_present_flag=0)),
    (StreamContext(1, mps_topology_indexed_reference_flag=1),
     ndu(topology_elem_id=None, topology_elem_id_index=300)),
    (StreamContext(0, mps_topology_indexed_reference_flag=1),
     ndu(topology_elem_id=None, topology_elem_id_index_list=[4, 0, 1000],
         nnr_compressed_data_unit_payload_type=PayloadType.BLOCK,
         compressed_parameter_types=8)),
])
def test_ndu_header_round_trip(ctx: StreamContext, header: CompressedDataUnitHeader) -> None:
    back, _ = roundtrip(header, ctx)
    assert back == header


def test_ndu_header_dc_round_trip() -> None:
    cb_w = IntegerCodebook([-2, -1, 0, 3], cb_zero_offset=1, codebook_egk=0)
    cb_h = IntegerCodebook([-40, 0, 40], cb_zero_offset=1, codebook_egk=5)
    h = ndu(nnr_compressed_data_unit_payload_type=PayloadType.BLOCK, topology_elem_id=None,
            topology_elem_id_list=["l.weight_G", "l.weight_H", "l.bias"],
            compressed_parameter_types=0b1001, decomposition_rank=9, g_number_of_rows=20,
            tensor_dimensions=[20, 30], codebook=cb_w, codebook_dc=cb_h, scan_order=1,
            cabac_entry_point_list=[CabacEntryPoint(i, 0, 10 * i) for i in range(3)])
    # G: 20 rows -> 3 block rows, H: 9 rows -> 2 block rows: (3-1) + (2-1) = 3 entry points
    assert h.num_entry_points([20, 30]) == 3
    back, _ = roundtrip(h, P1)
    assert back == h


def test_non_block_dc_entry_points_follow_g_and_h() -> None:
    common = dict(compressed_parameter_types=1, decomposition_rank=9, g_number_of_rows=20,
                  tensor_dimensions=[20, 30], scan_order=1)
    g = ndu(topology_elem_id="l.weight_G", **common,
            cabac_entry_point_list=[CabacEntryPoint(0, 0, 1), CabacEntryPoint(0, 0, 2)])
    h = ndu(topology_elem_id="l.weight_H", **common,
            cabac_entry_point_list=[CabacEntryPoint(0, 0, 3)])
    assert roundtrip(g, P0)[0] == g
    assert roundtrip(h, P0)[0] == h
    anon = ndu(topology_elem_id="x", **common, cabac_entry_point_list=[CabacEntryPoint(0, 0, 3)])
    assert roundtrip(anon, P0, decomposed_tensor_type="H")[0] == anon
    ctx = StreamContext(dc_g_pending=True)   # the previous DC NDU held G
    assert roundtrip(anon, ctx)[0] == anon


@pytest.mark.parametrize("pt, cpt, dims, scan, g, r, kind, expected", [
    (1, 0, [16, 8, 3, 3], 1, None, None, "G", 1),
    (1, 0, [8, 8], 1, None, None, "G", 0),
    (1, 0, [9, 8], 1, None, None, "G", 1),
    (1, 0, [100, 384], 3, None, None, "G", 3),
    (1, 0, [64, 384], 4, None, None, "G", 0),
    (1, 0, [65, 2], 4, None, None, "G", 1),
    (1, 0, [0, 5], 1, None, None, "G", 0),
    (3, 1, [20, 30], 1, 20, 9, "G", 3),
    (1, 1, [20, 30], 1, 20, 9, "G", 2),
    (1, 1, [20, 30], 1, 20, 9, "H", 1),
])
def test_num_block_rows_minus1(pt, cpt, dims, scan, g, r, kind, expected) -> None:
    assert num_block_rows_minus1(pt, cpt, dims, scan, g, r, kind) == expected


def test_ndu_out_of_band_dimensions() -> None:
    h = ndu(tensor_dimensions=None, scan_order=1,
            cabac_entry_point_list=[CabacEntryPoint(1, 0, 2)])
    back, _ = roundtrip(h, P0, dims_hint=[16, 4])
    assert back == h
    back, _ = roundtrip(h, P0, dims_hint=lambda hdr: [16, 4] if hdr.topology_elem_id == "w"
                        else None)
    assert back == h
    with pytest.raises(UnsupportedFeatureError):
        roundtrip(h, P0)
    none = ndu(tensor_dimensions=None, input_parameters_present_flag=0,
               cabac_unary_length_flag=0, cabac_unary_length_minus1=9)
    back, _ = roundtrip(none, P0, dims_hint=[7])
    assert back == none and back.compressed_parameter_types == 0


def test_absent_cabac_unary_length_is_nine() -> None:
    h = ndu(cabac_unary_length_flag=0, cabac_unary_length_minus1=10)
    w = BitWriter()
    h.write(w, P0)
    back = CompressedDataUnitHeader.read(BitReader(w.getvalue()), P0)
    assert back.cabac_unary_length_minus1 == 9 and back.cabac_unary_length == 10


def test_ndu_header_unsupported_and_reserved() -> None:
    split = ndu(topology_elem_id=None, topology_elem_id_list=["a", "b"])
    with pytest.raises(UnsupportedFeatureError):
        split.write(BitWriter(), P0)
    w = BitWriter()   # hand-made: FLOAT with multiple elements and input parameters
    w.u(5, 1), w.u(1, 1), w.u(1, 0), w.u(1, 1)
    write_topology_elements_ids_list(w, 0, ["a", "b"])
    w.u(1, 0), w.u(1, 0), w.u(1, 0), w.u(1, 0), w.u(4, 0)
    w.byte_alignment()
    with pytest.raises(UnsupportedFeatureError):
        CompressedDataUnitHeader.read(BitReader(w.getvalue()), P0)
    with pytest.raises(NonConformingBitstreamError):   # reserved payload type 4
        CompressedDataUnitHeader.read(BitReader(bytes([4 << 3 | 1]) + b"w\0\0\0"), P0)


def test_ndu_header_reserved_scan_order() -> None:
    w = BitWriter()
    w.u(5, 1), w.u(1, 0), w.u(1, 0), w.u(1, 1)
    w.st("w")
    w.u(1, 0), w.u(1, 0)                       # codebook_present_flag, dq_flag
    w.u(1, 1), w.u(1, 0), w.u(4, 0)            # dims present, no unary length, cpt 0
    w.ue(1, 2), w.ue(7, 4), w.ue(7, 4)
    w.u(4, 5)                                  # scan_order 5 (reserved)
    w.byte_alignment()
    with pytest.raises(NonConformingBitstreamError, match="scan_order"):
        CompressedDataUnitHeader.read(BitReader(w.getvalue()), P0)


def test_ndu_header_reserved_parent_type() -> None:
    w = BitWriter()
    w.u(5, 1), w.u(1, 0), w.u(1, 0), w.u(1, 0)
    w.st("w")
    w.u(1, 0)              # node_id_present_flag
    w.u(1, 1), w.u(2, 3)   # parent present, reserved type 3
    w.byte_alignment()
    with pytest.raises(NonConformingBitstreamError):
        CompressedDataUnitHeader.read(BitReader(w.getvalue()), P1_PARENT)


@pytest.mark.parametrize("ctx, header", [
    (P0, ndu(node_id_present_flag=1, device_id=0, parameter_id=0, put_node_depth=0)),
    (P1, ndu(parent_node_id_present_flag=1, parent_node_id_type=0, parent_device_id=0)),
    (P1, ndu(node_id_present_flag=1, device_id=0, parameter_id=None, put_node_depth=0)),
    (P1_PARENT, ndu(parent_node_id_present_flag=1, parent_node_id_type=1,
                    parent_node_payload_sha256=b"short")),
    (P0, ndu(topology_elem_id=None)),
    (P0, ndu(topology_elem_id_index=3)),           # two id forms
    (P0, ndu(scan_order=1)),                       # entry point list missing
    (P0, ndu(scan_order=5)),
    (P0, ndu(tensor_dimensions=[8], scan_order=1)),
    (P0, ndu(nnr_compressed_data_unit_payload_type=PayloadType.INT,
             codebook=IntegerCodebook([0], 0))),
    (P0, ndu(codebook=IntegerCodebook([0, 0], 0))),
    (P0, ndu(codebook=IntegerCodebook([0, 1], 2))),
    (P0, ndu(codebook_dc=IntegerCodebook([0], 0))),
    (P0, ndu(input_parameters_present_flag=0)),
    (P0, ndu(nnr_compressed_data_unit_payload_type=7)),
    (P0, ndu(tensor_dimensions=[9, 9], scan_order=1,
             cabac_entry_point_list=[CabacEntryPoint(0, 1, 0)])),   # dq_state without dq
    (P0, ndu(tensor_dimensions=[9, 9], scan_order=1,
             cabac_entry_point_list=[CabacEntryPoint(256, 0, 0)])),
])
def test_ndu_header_write_rejects(ctx: StreamContext, header: CompressedDataUnitHeader) -> None:
    with pytest.raises(ConfigError):
        header.write(BitWriter(), ctx)


# --- codebook, entry points, id lists ------------------------------------------------------
@pytest.mark.parametrize("codebook, zero, egk", [
    ([0], 0, 0), ([-1, 0, 1], 1, 0), ([-100, -3, 2, 50, 51], 0, 4), ([1, 2, 3, 4], 3, 15),
    (list(range(-500, 500, 7)), 60, 2),
])
def test_codebook_round_trip(codebook: list[int], zero: int, egk: int) -> None:
    cb = IntegerCodebook(codebook, zero, egk)
    w = BitWriter()
    cb.write(w)
    r = BitReader(w.getvalue())
    back = IntegerCodebook.read(r)
    assert back == cb
    assert back.codebook_size == len(codebook)
    assert back.codebook_zero_value == codebook[zero]
    assert back.codebook_center_offset == zero - (len(codebook) >> 1)


def test_codebook_bits() -> None:
    w = BitWriter()
    IntegerCodebook([-2, 0, 3], 1, 0).write(w)
    # egk 0000 | size ue(2)=3 '111' | center ie(2)=0 '100' | zero ie(7)=0 '10000000'
    # | left ue(0)=1 '010' | right ue(0)=2 '011'
    assert "".join(f"{b:08b}" for b in w.getvalue())[:w.bit_position] == \
        "0000" "111" "100" "10000000" "010" "011"


def test_codebook_invalid_offset() -> None:
    w = BitWriter()
    w.u(4, 0), w.ue(2, 3), w.ie(2, 2), w.ie(7, 0)   # CbZeroOffset 3 >= size 3
    with pytest.raises(NonConformingBitstreamError):
        IntegerCodebook.read(BitReader(w.getvalue()))
    w = BitWriter()
    w.u(4, 0), w.ue(2, 0), w.ie(2, 0)
    with pytest.raises(NonConformingBitstreamError):
        IntegerCodebook.read(BitReader(w.getvalue() + b"\xff"))
    w = BitWriter()
    w.u(4, 15), w.ue(2, 1 << 30), w.ie(2, 0), w.ie(7, 0)   # huge size, few bits
    with pytest.raises(TruncatedBitstreamError):
        IntegerCodebook.read(BitReader(w.getvalue()))


@pytest.mark.parametrize("dq", [0, 1])
def test_entry_point_list_round_trip(dq: int) -> None:
    eps = [CabacEntryPoint(17, 5 * dq, 4000), CabacEntryPoint(0, 7 * dq, 3900),
           CabacEntryPoint(255, 0, 4500), CabacEntryPoint(1, dq, 0)]
    w = BitWriter()
    write_entry_point_list(w, eps, dq)
    assert read_entry_point_list(BitReader(w.getvalue()), len(eps), dq) == eps
    with pytest.raises(TruncatedBitstreamError):
        read_entry_point_list(BitReader(w.getvalue()), 1000, dq)


def test_entry_point_list_bits() -> None:
    w = BitWriter()
    write_entry_point_list(w, [CabacEntryPoint(1, 2, 3), CabacEntryPoint(4, 5, 2)], 1)
    bits = "".join(f"{b:08b}" for b in w.getvalue())[:w.bit_position]
    # 00000001 010 ue(11)=3: 1 00000000011 | 00000100 101 ie(7) of 2-3=-1 -> ue 2: 1 0000010
    assert bits == "00000001" "010" "100000000011" "00000100" "101" "10000010"


@pytest.mark.parametrize("indexed, ids", [(0, ["a", "bb", ""]), (1, [0, 5, 900, 3])])
def test_topology_elements_ids_list(indexed: int, ids: list) -> None:
    w = BitWriter()
    write_topology_elements_ids_list(w, indexed, ids)
    r = BitReader(w.getvalue())
    assert read_topology_elements_ids_list(r, indexed) == ids
    assert r.bits_left == 0
    with pytest.raises(ConfigError):
        write_topology_elements_ids_list(BitWriter(), indexed, ids[:1])


# --- MPS / LPS / maps ------------------------------------------------------------------------
def sparsification_map() -> SparsificationPerformanceMap:
    return SparsificationPerformanceMap(
        spm_count_thresholds=3, sparsification_threshold=[0.5, 0.25],
        non_zero_ratio=[0.125, 0.75], spm_nn_accuracy=[0.875, 0.5], spm_count_classes=[2, 0],
        spm_class_bitmask=[3, 1000], spm_nn_class_accuracy=[[0.25, 1.0], []])


def pruning_map() -> PruningPerformanceMap:
    return PruningPerformanceMap(
        ppm_count_pruning_ratios=2, pruning_ratio=[0.5], ppm_nn_accuracy=[0.75],
        ppm_count_classes=[3], ppm_class_bitmask=[7], ppm_nn_class_accuracy=[[0.5, 0.25, 2.0]])


def unification_map() -> UnificationPerformanceMap:
    return UnificationPerformanceMap(
        upm_count_thresholds=3, count_reshaped_tensor_dimension=[3, 0],
        reshaped_tensor_dimensions=[[64, 9], []], count_super_block_dimension=[2, 1],
        super_block_dimensions=[[8], []], count_block_dimension=[3, 0],
        block_dimensions=[[4, 4], []], unification_threshold=[0.5, 1.5],
        upm_nn_accuracy=[0.25, 0.75], upm_count_classes=[5, 0], upm_class_bitmask=[2, 1],
        upm_nn_class_accuracy=[[0.5, 0.25], [1.0]])   # count per entry = class bitmask (quirk)


def decomposition_map() -> DecompositionPerformanceMap:
    return DecompositionPerformanceMap(
        dpm_count_thresholds=2, mse_threshold=[0.001953125], dpm_nn_accuracy=[0.5],
        nn_reduction_ratio=[0.25], dpm_count_classes=[2], dpm_nn_class_accuracy=[[0.5, 0.5]])


@pytest.mark.parametrize("pm", [
    sparsification_map(), pruning_map(), unification_map(), decomposition_map(),
    SparsificationPerformanceMap(spm_count_thresholds=0),
    PruningPerformanceMap(ppm_count_pruning_ratios=1),
])
def test_performance_map_round_trip(pm) -> None:
    w = BitWriter()
    pm.write(w)
    assert type(pm).read(BitReader(w.getvalue())) == pm


def test_performance_map_rejects_inconsistent_lists() -> None:
    pm = sparsification_map()
    pm.non_zero_ratio.pop()
    with pytest.raises(ConfigError):
        pm.write(BitWriter())
    um = unification_map()
    um.upm_nn_class_accuracy[0].append(0.0)
    with pytest.raises(ConfigError):
        um.write(BitWriter())


@pytest.mark.parametrize("ctx, mps", [
    (P0, ModelParameterSet()),
    (P0, ModelParameterSet(mps_quantization_method_flags=0, mps_qp_density=None,
                           mps_quantization_parameter=None, topology_carriage_flag=0)),
    (P0, ModelParameterSet(mps_quantization_method_flags=3, mps_qp_density=7,
                           mps_quantization_parameter=-4096, mps_topology_indexed_reference_flag=1,
                           sparsification_performance_map=sparsification_map(),
                           pruning_performance_map=pruning_map(),
                           unification_performance_map=unification_map(),
                           decomposition_performance_map=decomposition_map())),
    (P1, ModelParameterSet()),
    (P1, ModelParameterSet(mps_parent_signalling_enabled_flag=1, nnr_pre_flag=1)),
    (P1, ModelParameterSet(base_model_id="base-v1", validation_set_performance=0.75,
                           performance_metric_type="top1", mps_quantization_parameter=4095,
                           decomposition_performance_map=decomposition_map())),
    (P1, ModelParameterSet(metric_type_performance_map_valid_flag=1,
                           performance_metric_type="mse",
                           unification_performance_map=unification_map())),
])
def test_mps_round_trip(ctx: StreamContext, mps: ModelParameterSet) -> None:
    back, data = roundtrip(mps, ctx)
    assert back == mps
    assert back.mps_sparsification_flag == int(mps.sparsification_performance_map is not None)


@pytest.mark.parametrize("ctx, mps", [
    (P0, ModelParameterSet(mps_parent_signalling_enabled_flag=1)),
    (P0, ModelParameterSet(base_model_id="x")),
    (P1, ModelParameterSet(nnr_pre_flag=1)),
    (P1, ModelParameterSet(validation_set_performance=0.5)),
    (P1, ModelParameterSet(mps_qp_density=None)),
    (P1, ModelParameterSet(mps_quantization_parameter=4096)),
])
def test_mps_write_rejects(ctx: StreamContext, mps: ModelParameterSet) -> None:
    with pytest.raises(ConfigError):
        mps.write(BitWriter(), ctx)


@pytest.mark.parametrize("lps", [
    LayerParameterSet(),
    LayerParameterSet(lps_quantization_method_flags=0, lps_qp_density=None,
                      lps_quantization_parameter=None),
    LayerParameterSet(lps_quantization_method_flags=2, lps_qp_density=1,
                      lps_quantization_parameter=-77,
                      sparsification_performance_map=sparsification_map(),
                      pruning_performance_map=pruning_map(),
                      unification_performance_map=unification_map()),
])
def test_lps_round_trip(lps: LayerParameterSet) -> None:
    assert roundtrip(lps, P1)[0] == lps
    header = LayerParameterSetHeader(lps_self_contained_flag=0)
    assert roundtrip(header, P1)[0] == header


def test_lps_unit_bytes() -> None:
    unit = write_unit(NnrUnitType.LPS, LayerParameterSetHeader(), LayerParameterSet())
    # size 8 | type 2, independent | self-contained 1 + 7 zero bits | 0 000 001 0
    # | qp_density 010 + qp i(13) 0 | byte_alignment
    assert unit == bytes.fromhex("00080a8002400080")
    units = parse_stream(write_unit(0, StartUnitHeader(0)) + unit)
    assert units[1].header == LayerParameterSetHeader()
    assert units[1].payload == LayerParameterSet()


# --- TPL / QNT / AGG -------------------------------------------------------------------------
def test_topology_round_trips() -> None:
    for header, payload in [
        (TopologyUnitHeader(3, 0), TopologyPayload.from_text("")),
        (TopologyUnitHeader(2, 1), TopologyPayload(topology_data=b"\x08\x00binary\x00onnx")),
        (TopologyUnitHeader(0, 0), TopologyPayload(topology_data=b"")),
        (TopologyUnitHeader(TopologyStorageFormat.REFLIST, 0),
         TopologyPayload(topology_data=None, topology_elem_id_list=["a.weight", "a.bias"])),
    ]:
        units = parse_stream(write_unit(0, StartUnitHeader(1))
                             + write_unit(3, header, payload))
        assert units[1].header == header and units[1].payload == payload
    assert TopologyPayload.from_text("graph").text() == "graph"
    with pytest.raises(NonConformingBitstreamError):
        TopologyPayload(topology_data=b"a\0b\0").text()


def test_topology_prun_unsupported() -> None:
    with pytest.raises(UnsupportedFeatureError):
        write_unit(3, TopologyUnitHeader(TopologyStorageFormat.PRUN, 0), TopologyPayload())
    raw = bytes.fromhex("0007 0e 05 00 00 00".replace(" ", ""))
    with pytest.raises(UnsupportedFeatureError):
        parse_stream(write_unit(0, StartUnitHeader(0)) + raw)


def test_quantization_round_trip() -> None:
    header = QuantizationUnitHeader(3, 1)
    payload = QuantizationPayload.from_text("per-channel")
    unit = write_unit(NnrUnitType.QNT, header, payload)
    assert unit[:5] == bytes([0, len(unit), 0x12, 3, 1])
    units = parse_stream(write_unit(0, StartUnitHeader(0)) + unit)
    assert units[1].header == header and units[1].payload == payload
    assert units[1].payload.text() == "per-channel"


def test_aggregate_round_trip() -> None:
    mps = write_unit(NnrUnitType.MPS, None, ModelParameterSet(), ctx=P1)
    h = ndu(tensor_dimensions=[4])
    nd = write_unit(NnrUnitType.NDU, h, b"\x12\x34", ctx=P1)
    agg_payload = AggregatePayload([mps, nd])
    agg_header = AggregatePayload.header_for(agg_payload.nnr_units)
    assert agg_header == AggregateUnitHeader(0)
    agg = write_unit(NnrUnitType.AGG, agg_header, agg_payload, ctx=P1)
    stream = write_unit(0, StartUnitHeader(1)) + agg
    units = parse_stream(stream)
    assert units[1].payload == agg_payload
    kids = units[1].children
    assert [k.unit_type for k in kids] == [1, 5]
    assert [k.index for k in kids] == [2, 3]
    assert kids[0].offset == 4 + 4 and kids[1].header == h
    assert kids[1].payload_bytes(stream) == b"\x12\x34"
    with pytest.raises(ConfigError):
        write_unit(NnrUnitType.AGG, AggregateUnitHeader(1), agg_payload)
    with pytest.raises(ConfigError):
        write_unit(NnrUnitType.AGG, agg_header, AggregatePayload([mps, nd[:-1]]))


def test_aggregate_nested_aggregate_rejected() -> None:
    s = write_unit(0, StartUnitHeader(0))
    m = write_unit(1, None, ModelParameterSet())
    inner = write_unit(6, AggregateUnitHeader(0), AggregatePayload([m, m]))
    outer = write_unit(6, AggregateUnitHeader(0), AggregatePayload([m, inner]))
    with pytest.raises(NonConformingBitstreamError):
        parse_stream(s + outer)
