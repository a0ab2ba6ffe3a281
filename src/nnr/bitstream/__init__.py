"""NNR high-level syntax: bit I/O, unit headers and payload parameter sets, unit framing."""
from nnr.bitstream.bits import BitReader, BitWriter
from nnr.bitstream.enums import (
    CompressedParameterTypes,
    DecompressedDataFormat,
    NnrUnitType,
    ParentNodeIdType,
    PayloadType,
    QuantizationMethodFlags,
    TopologyCompressionFormat,
    TopologyStorageFormat,
    unit_type_name,
)
from nnr.bitstream.stream import (
    ParsedUnit,
    StreamContext,
    StreamWriter,
    frame_unit,
    iter_units,
    parse_stream,
    raw_float_payload,
    raw_float_tensor,
    write_unit,
)
from nnr.bitstream.units import (
    AggregatePayload,
    AggregateUnitHeader,
    CabacEntryPoint,
    CompressedDataUnitHeader,
    DecompositionPerformanceMap,
    IntegerCodebook,
    LayerParameterSet,
    LayerParameterSetHeader,
    ModelParameterSet,
    PruningPerformanceMap,
    QuantizationPayload,
    QuantizationUnitHeader,
    SparsificationPerformanceMap,
    StartUnitHeader,
    TopologyPayload,
    TopologyUnitHeader,
    UnificationPerformanceMap,
    num_block_rows_minus1,
)

__all__ = [
    "AggregatePayload", "AggregateUnitHeader", "BitReader", "BitWriter", "CabacEntryPoint",
    "CompressedDataUnitHeader", "CompressedParameterTypes", "DecompositionPerformanceMap",
    "DecompressedDataFormat", "IntegerCodebook", "LayerParameterSet", "LayerParameterSetHeader",
    "ModelParameterSet", "NnrUnitType", "ParentNodeIdType", "ParsedUnit", "PayloadType",
    "PruningPerformanceMap", "QuantizationMethodFlags", "QuantizationPayload",
    "QuantizationUnitHeader", "SparsificationPerformanceMap", "StartUnitHeader",
    "StreamContext", "StreamWriter", "TopologyCompressionFormat", "TopologyPayload",
    "TopologyStorageFormat", "TopologyUnitHeader", "UnificationPerformanceMap", "frame_unit",
    "iter_units", "num_block_rows_minus1", "parse_stream", "raw_float_payload",
    "raw_float_tensor", "unit_type_name", "write_unit",
]
