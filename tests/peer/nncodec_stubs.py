"""Let ``nncodec.nnc`` import in NNCodec's own environment without torch or tensorflow.

``nncodec/nnc/compression.py`` imports its PyTorch and TensorFlow front ends at module level;
``compress`` and ``decompress`` on a dict of arrays use neither. When torch is not installed,
empty stand-in modules take their place so that the real functions can be called. Shared by
tests/peer/nncodec_driver.py and benchmarks/eval/nncodec_driver.py (both run as scripts with the
peer environment's python, so this file imports nothing from nnr).
"""
from __future__ import annotations

import importlib.util
import sys
import types


def stub_frameworks() -> None:
    if importlib.util.find_spec("torch") is not None:
        return
    names = ["nncodec.framework", "nncodec.framework.tensorflow_model",
             "nncodec.framework.pytorch_model", "nncodec.framework.use_case_init"]
    parent = types.ModuleType(names[0])
    parent.__path__ = []  # a package, so that "from nncodec.framework import x" resolves
    sys.modules[names[0]] = parent
    for name in names[1:]:
        module = types.ModuleType(name)
        sys.modules[name] = module
        setattr(parent, name.rsplit(".", 1)[1], module)
