"""Framework adapters: every module has the same verbs.

``load(path) -> Model``, ``save(model, path)``, ``to_tensors(obj) -> Model`` (from a framework
object), ``from_tensors(model, ...)`` (back to a framework object), ``topology_for(model,
inline)`` and ``from_stream(decoded) -> Model``. Frameworks are imported lazily; a missing one
raises :class:`nnr.UnsupportedFeatureError` with the ``pip install 'nnr[...]'`` hint.
"""
from nnr.adapters._coding import decode_model, encode_model, load, save
from nnr.adapters._registry import ADAPTERS, for_path, for_topology, format_of_path, get, names
from nnr.model import Model

__all__ = ["encode_model", "decode_model", "get", "for_path", "for_topology", "format_of_path",
           "names", "ADAPTERS", "Model", "load", "save"]

