"""Without Flower, importing the integration says what to install (runs with or without it)."""
from __future__ import annotations

import importlib
import sys

import pytest

from nnr.errors import UnsupportedFeatureError


def test_import_without_flower_names_the_extra(monkeypatch):
    for name in list(sys.modules):
        if name == "flwr" or name.startswith(("flwr.", "nnr.integrations.flower")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flwr", None)          # "import flwr" now fails
    with pytest.raises(UnsupportedFeatureError, match=r"pip install 'nnr\[flower\]'"):
        importlib.import_module("nnr.integrations.flower")
