"""One module per NNR unit type; each dataclass has ``read(reader, ctx[, header])`` and a
mirroring ``write(writer, ctx[, header])``."""
from nnr.bitstream.units.aggregate import AggregatePayload, AggregateUnitHeader
from nnr.bitstream.units.compressed_data import (
    CabacEntryPoint,
    CompressedDataUnitHeader,
    IntegerCodebook,
    num_block_rows_minus1,
)
from nnr.bitstream.units.layer_parameter_set import LayerParameterSet, LayerParameterSetHeader
from nnr.bitstream.units.model_parameter_set import ModelParameterSet
from nnr.bitstream.units.performance_maps import (
    DecompositionPerformanceMap,
    PruningPerformanceMap,
    SparsificationPerformanceMap,
    UnificationPerformanceMap,
)
from nnr.bitstream.units.quantization import QuantizationPayload, QuantizationUnitHeader
from nnr.bitstream.units.start import StartUnitHeader
from nnr.bitstream.units.topology import TopologyPayload, TopologyUnitHeader

__all__ = [
    "AggregatePayload",
    "AggregateUnitHeader",
    "CabacEntryPoint",
    "CompressedDataUnitHeader",
    "DecompositionPerformanceMap",
    "IntegerCodebook",
    "LayerParameterSet",
    "LayerParameterSetHeader",
    "ModelParameterSet",
    "PruningPerformanceMap",
    "QuantizationPayload",
    "QuantizationUnitHeader",
    "SparsificationPerformanceMap",
    "StartUnitHeader",
    "TopologyPayload",
    "TopologyUnitHeader",
    "UnificationPerformanceMap",
    "num_block_rows_minus1",
]
