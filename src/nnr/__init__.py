"""nnr: MPEG Neural Network Coding (ISO/IEC 15938-17) with a native DeepCABAC core."""
from nnr.errors import (BitstreamError, ConfigError, NnrError, NonConformingBitstreamError,
                        ResourceLimitError, TruncatedBitstreamError, UnsupportedFeatureError)

__version__ = "0.1.0"

__all__ = ["BitstreamError", "ConfigError", "NnrError", "NonConformingBitstreamError",
           "ResourceLimitError", "TruncatedBitstreamError", "UnsupportedFeatureError",
           "__version__"]
