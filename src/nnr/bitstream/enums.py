"""Enumerations of the NNR high-level syntax (notes §4.15)."""
from __future__ import annotations

import enum

__all__ = [
    "NnrUnitType",
    "PayloadType",
    "CompressedParameterTypes",
    "QuantizationMethodFlags",
    "ParentNodeIdType",
    "TopologyStorageFormat",
    "TopologyCompressionFormat",
    "PruningInformationRepresentationTypes",
    "DecompressedDataFormat",
    "unit_type_name",
]


class NnrUnitType(enum.IntEnum):
    """``nnr_unit_type``; 7..63 are reserved."""

    STR = 0
    MPS = 1
    LPS = 2
    TPL = 3
    QNT = 4
    NDU = 5
    AGG = 6


class PayloadType(enum.IntEnum):
    """``nnr_compressed_data_unit_payload_type``; 4..31 are reserved."""

    INT = 0
    FLOAT = 1
    RAW_FLOAT = 2
    BLOCK = 3


class CompressedParameterTypes(enum.IntFlag):
    """Bits of ``compressed_parameter_types`` (NNCodec's BlockParameterTypes)."""

    DC = 0x01   # decomposition (G and H)
    LS = 0x02   # local scaling
    BN = 0x04   # batch norm
    BI = 0x08   # bias


class QuantizationMethodFlags(enum.IntFlag):
    """Bits of ``mps_quantization_method_flags`` / ``lps_quantization_method_flags``."""

    QSU = 1   # scalar uniform
    QCB = 2   # codebook


class ParentNodeIdType(enum.IntEnum):
    """``parent_node_id_type`` (profile 1); 3 is reserved."""

    ICNN_NDU_ID = 0
    ICNN_NDU_PL_SHA256 = 1
    ICNN_NDU_PL_SHA512 = 2


class TopologyStorageFormat(enum.IntEnum):
    """``topology_storage_format``."""

    UNREC = 0
    NNEF = 1
    ONNX = 2
    PYT = 3
    TEF = 4
    PRUN = 5
    REFLIST = 6


class TopologyCompressionFormat(enum.IntEnum):
    """``topology_compression_format``."""

    RAW = 0
    DFL = 1   # deflate


class PruningInformationRepresentationTypes(enum.IntEnum):
    BMSK = 0
    DICT = 1


class DecompressedDataFormat(enum.IntEnum):
    """``nnr_decompressed_data_format``."""

    INT32 = 0
    FLOAT32 = 1
    INT2 = 2
    INT3 = 3
    INT4 = 4
    INT8 = 5
    INT16 = 6
    INT64 = 7
    FLOAT16 = 8
    FLOAT64 = 9


def unit_type_name(unit_type: int) -> str:
    """``"NNR_NDU"`` etc., or ``"reserved(n)"``."""
    try:
        return f"NNR_{NnrUnitType(unit_type).name}"
    except ValueError:
        return f"reserved({unit_type})"
