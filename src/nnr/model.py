"""A framework-neutral model: named arrays, their roles and original dtypes, and the topology.

Adapters (:mod:`nnr.adapters`) turn a framework's file or object into a :class:`Model` and back;
:func:`nnr.adapters.encode_model` codes one into an NNR bitstream with its topology in the
NNR_TPL unit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from nnr.config import BLOCK_ROLES
from nnr.encoder import Topology

__all__ = ["Model", "ROLES", "codable", "original_nbytes"]

#: Roles a tensor can have. ``weight``, ``bias``, ``bn.*`` and ``weight.ls`` are those of an
#: NNR_PT_BLOCK unit; everything else is ``unspecified``.
ROLES = ("weight",) + BLOCK_ROLES + ("unspecified",)

_ITEMSIZE = {"bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}
_INT32 = (-(1 << 31), (1 << 31) - 1)


def original_nbytes(array: np.ndarray, dtype: str) -> int:
    """Bytes the tensor takes in its original dtype (bfloat16 arrays are held as float32)."""
    size = _ITEMSIZE.get(dtype)
    if size is None:
        try:
            size = np.dtype(dtype).itemsize
        except TypeError:
            size = array.itemsize
    return int(array.size) * size


def codable(array: np.ndarray) -> bool:
    """Whether :func:`nnr.encode` can code ``array``: finite floats, or integers and booleans
    within the int32 range. Anything else travels in the topology."""
    kind = array.dtype.kind
    if kind == "b":
        return True
    if kind in "iu":
        return array.size == 0 or (int(array.min()) >= _INT32[0] and int(array.max()) <= _INT32[1])
    if kind == "f":
        with np.errstate(over="ignore"):
            return bool(np.isfinite(array.astype(np.float32, copy=False)).all())
    return False


@dataclass
class Model:
    """Named tensors of one model, as a framework holds them.

    ``tensors`` maps names (in the framework's order) to numpy arrays; bfloat16 tensors are
    held as float32 arrays and ``dtypes`` names their original dtype (``"bfloat16"``,
    ``"float16"``, ``"int64"``, ...; missing entries mean the array's own dtype). ``roles``
    gives each tensor's role (:data:`ROLES`), ``blocks`` the candidate NNR_PT_BLOCK groups
    found in the framework's structure (``{weight name: {role: tensor name}}``), ``metadata``
    the framework's own metadata (JSON values), ``topology`` what the NNR_TPL unit carries and
    ``format`` the adapter that made the model.
    """

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, dict[str, str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    topology: Topology | None = None
    format: str = "numpy"

    def role(self, name: str) -> str:
        return self.roles.get(name, "unspecified")

    def dtype(self, name: str) -> str:
        return self.dtypes.get(name, str(self.tensors[name].dtype))

    def nbytes(self, names: Iterable[str] | None = None) -> int:
        """Bytes of the tensors in their original dtypes."""
        names = self.tensors if names is None else names
        return sum(original_nbytes(self.tensors[n], self.dtype(n)) for n in names)

    def codable_names(self) -> list[str]:
        """Tensors :func:`nnr.encode` can code (the others go into the topology)."""
        return [n for n, a in self.tensors.items() if codable(a)]

    def valid_blocks(self, exclude: Iterable[str] = ()) -> dict[str, dict[str, str]]:
        """The candidate blocks that an NNR_PT_BLOCK unit can carry: a float weight with two or
        more dimensions and float 1-D members of length ``weight.shape[0]``; batch-norm only
        with all four of its tensors. Tensors in ``exclude`` take part in no block."""
        skip = set(exclude)
        out: dict[str, dict[str, str]] = {}
        used: set[str] = set()
        for weight, members in self.blocks.items():
            w = self.tensors.get(weight)
            if w is None or weight in skip or w.ndim < 2 or not _float_ok(w):
                continue
            ok = {role: name for role, name in members.items()
                  if role in BLOCK_ROLES and name not in skip and name not in used
                  and name != weight and _member_ok(self.tensors.get(name), w.shape[0])}
            bn = [r for r in ok if r.startswith("bn.")]
            if bn and len(bn) != 4:
                ok = {r: n for r, n in ok.items() if not r.startswith("bn.")}
            if ok:
                out[weight] = ok
                used.update(ok.values())
                used.add(weight)
        return out

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any], **fields: Any) -> "Model":
        return cls(tensors={n: np.asarray(v) for n, v in tensors.items()}, **fields)


def _float_ok(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and codable(a)


def _member_ok(a: np.ndarray | None, length: int) -> bool:
    return a is not None and a.shape == (length,) and _float_ok(a)
