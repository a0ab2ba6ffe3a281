"""nnr: MPEG Neural Network Coding (ISO/IEC 15938-17) with a native DeepCABAC core."""
from nnr.codec import (DecodedStream, DecoderState, EncoderState, StreamInfo, TensorInfo, Topology,
                       UnitInfo, decode, decode_stream, encode, inspect, load, save)
from nnr.config import DecodeLimits, EncodeConfig
from nnr.search import (MetricTarget, SizeTarget, encode_for_acceptance, encode_for_metric,
                         encode_for_size)
from nnr.errors import (BitstreamError, ConfigError, NnrError, NonConformingBitstreamError,
                        ResourceLimitError, TruncatedBitstreamError, UnsupportedFeatureError)

__version__ = "0.1.0"

__all__ = ["MetricTarget", "SizeTarget", "encode_for_acceptance", "encode_for_metric", "encode_for_size", "encode", "decode", "decode_stream", "DecodedStream", "Topology", "inspect", "save", "load", "EncodeConfig", "DecodeLimits",
           "DecoderState", "EncoderState", "StreamInfo", "TensorInfo", "UnitInfo",
           "NnrError", "ConfigError", "UnsupportedFeatureError", "BitstreamError",
           "TruncatedBitstreamError", "NonConformingBitstreamError", "ResourceLimitError",
           "__version__"]
