"""Model updates over NNR incremental coding (edition 2): a sender and a receiver that stay in
sync.

An :class:`UpdateEncoder` and an :class:`UpdateDecoder` start from the same ``base`` (known to
both sides, e.g. a shared initialisation or a pretrained model; or nothing, and the first
stream carries a full model). Each stream the encoder writes is an ordinary NNR bitstream of
one incremental sequence (``nnr.encode(..., state=...)`` with ``differences``, ``tca`` and
``hdsp``), and the decoder reads it with ``nnr.decode(..., state=...)``::

    enc, dec = UpdateEncoder(base, qp=-32), UpdateDecoder(base)
    for model in models:                      # e.g. the weights after each fine-tuning step
        stream = enc.encode(model)            # the difference to what the receiver has
        received = dec.decode(stream)         # the receiver's reconstruction of ``model``
    assert all(np.array_equal(received[k], enc.reference[k]) for k in received)

What the layer adds to the codec:

* **Closed loop.** The encoder decodes its own streams and keeps :attr:`~UpdateEncoder.reference`,
  exactly what the receiver holds. :meth:`UpdateEncoder.encode` codes ``model - reference``, so
  the part of one difference lost to quantization is in the next one: errors do not
  accumulate, whatever the number of updates.
* **Difference updates against a moving reference.** :meth:`UpdateEncoder.rebase` and
  :meth:`UpdateDecoder.rebase` give both ends a new reference they both hold (a federated
  client's update is coded against the global model it received, which changes every
  round); :meth:`UpdateEncoder.encode_delta` codes a difference given directly (a gradient)
  and :meth:`UpdateDecoder.decode_delta` returns the decoded difference. There the closed
  loop no longer carries the quantization loss forward, so ``error_feedback=True`` keeps it
  and adds it to the next update (residual accumulation): sent late instead of never.
* **Predictive residual coding** (``predictive=a``, 0 < a <= 1, the same on both sides): an
  update is coded as its difference to ``a`` times the previous decoded update, and the
  receiver adds the prediction back. It pays off when consecutive updates are correlated.
* **Full-model updates** (:meth:`UpdateEncoder.encode_full`, and the first stream when there is
  no base): a stream without differences at ``full_qp``; the receiver replaces those tensors.
* **Partial updates**: a mapping with some of the tensors updates only those; the others stay
  as they are. A tensor whose quantized difference is all zero has no NDU in the stream.
* **Transfer learning**: a tensor that the receiver does not have, or whose shape changed
  (a new classifier head), is sent whole inside the update stream, at ``full_qp``, and
  replaces the receiver's tensor.
* **Byte accounting**: :attr:`~UpdateEncoder.stats` (and the decoder's) counts streams, bytes
  and what the same tensors would take as float32.

Both ends can be saved to bytes and restored (:meth:`UpdateEncoder.to_bytes`,
:meth:`UpdateEncoder.from_bytes`), e.g. to keep a federated-learning client's state between
rounds; the format is an ``.npz`` archive read without pickle.

Float tensors are held as float32 (what the decoder reconstructs), integer tensors as int64;
integer differences are coded losslessly. The reference is copied from the caller's arrays and
held read-only, so an in-place change to an array cannot silently break the sync. Only the
public codec API is used.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

import nnr
from nnr.config import EncodeConfig
from nnr.errors import ConfigError

__all__ = ["UpdateEncoder", "UpdateDecoder", "UpdateStats"]

Tensors = Mapping[str, Any]

#: Options of the layer itself (the rest are :class:`nnr.EncodeConfig` fields).
_UPDATE_DEFAULTS = dict(differences=True, tca=True, hdsp=True)


@dataclass
class UpdateStats:
    """Bytes moved by one end of an update chain.

    ``sizes`` lists every stream's size in order; ``float32_bytes`` is what the tensors of
    those streams would have taken as float32 arrays (the uncompressed transmission)."""

    streams: int = 0
    bytes: int = 0
    float32_bytes: int = 0
    sizes: list[int] = field(default_factory=list)

    def add(self, size: int, float32_bytes: int) -> None:
        self.streams += 1
        self.bytes += size
        self.float32_bytes += float32_bytes
        self.sizes.append(size)

    @property
    def last(self) -> int:
        """Size of the most recent stream (0 before the first)."""
        return self.sizes[-1] if self.sizes else 0

    @property
    def ratio(self) -> float:
        """Bytes sent over the float32 size of the same tensors (0 before the first)."""
        return self.bytes / self.float32_bytes if self.float32_bytes else 0.0


def _stored(value: Any) -> np.ndarray:
    """How a tensor is held: float32 for floats, int64 for integers and booleans; a 0-d
    tensor as shape (1,), as the codec codes it."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.dtype.kind in "iub":
        return np.ascontiguousarray(arr, dtype=np.int64)
    if arr.dtype.kind != "f":
        raise ConfigError(f"unsupported dtype {arr.dtype} (float or integer arrays only)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _held(value: Any, *, copy: bool = False) -> np.ndarray:
    """A tensor as the reference holds it: stored (copied when asked, so that later
    in-place changes to the caller's array cannot reach it) and read-only."""
    arr = _stored(value)
    if copy:
        arr = arr.copy()
    arr.flags.writeable = False
    return arr


def _float32_bytes(tensors: Mapping[str, np.ndarray]) -> int:
    return 4 * sum(int(np.asarray(a).size) for a in tensors.values())


def _check_predictive(predictive: float) -> float:
    a = float(predictive)
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"predictive must be in [0, 1] (0: off), got {predictive}")
    return a


class _End:
    """What both ends hold: the reference (the receiver's tensors), the previous decoded
    update (the prediction) and the byte counts. The decoded update is applied by one
    method on both sides, so their float arithmetic is identical."""

    def __init__(self, base: Tensors | None, predictive: float) -> None:
        self.reference: dict[str, np.ndarray] = {n: _held(a, copy=True)
                                                 for n, a in (base or {}).items()}
        self.predictive = _check_predictive(predictive)
        self.stats = UpdateStats()
        self._previous: dict[str, np.ndarray] = {}

    def rebase(self, reference: Tensors) -> None:
        """Replace the reference: both ends now hold ``reference`` (their own copies)."""
        self.reference = {n: _held(a, copy=True) for n, a in reference.items()}
        self._previous = {n: p for n, p in self._previous.items()
                          if n in self.reference and self.reference[n].shape == p.shape}

    def _prediction(self, name: str) -> np.ndarray | None:
        prev = self._previous.get(name)
        if prev is None or not self.predictive:
            return None
        return prev if self.predictive == 1.0 else (prev * np.float32(self.predictive))

    def _is_new(self, name: str, shape: tuple[int, ...]) -> bool:
        ref = self.reference.get(name)
        return ref is None or ref.shape != tuple(shape)

    def _apply_full(self, decoded: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        changes = {}
        for name, arr in decoded.items():
            old = self.reference.get(name)
            new = _held(arr)
            self.reference[name] = new
            self._previous.pop(name, None)
            changes[name] = new if old is None or old.shape != new.shape else new - old
        return changes

    def _apply_update(self, decoded: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the decoded residuals (plus the predictions) to the reference; a tensor that
        is new or has a new shape is replaced. Returns the decoded differences."""
        deltas = {}
        for name in list(decoded) + [n for n in self._previous if n not in decoded]:
            arr = decoded.get(name)
            if arr is not None and self._is_new(name, arr.shape):
                self.reference[name] = deltas[name] = _held(arr)
                self._previous.pop(name, None)
                continue
            delta = self._prediction(name)
            if arr is not None:
                part = np.asarray(arr, dtype=self.reference[name].dtype)
                delta = part if delta is None else delta + part
            if delta is None:
                continue
            delta.flags.writeable = False         # it may be the next prediction
            self.reference[name] = _held(self.reference[name] + delta)
            if self.predictive and delta.dtype == np.float32:
                self._previous[name] = delta
            deltas[name] = delta
        return deltas


class UpdateEncoder(_End):
    """The sending end of an update chain (see the module documentation).

    ``base``: the tensors the receiver already has (None: nothing; the first stream is a
    full model). ``options``: :class:`nnr.EncodeConfig` fields for the update streams (``qp``,
    ``dq``, ``nonweight_qp``, ``tca``, ``hdsp``, ``row_skip`` ...; ``tca`` and ``hdsp`` are on
    unless turned off; ``differences`` is implied). ``full_qp``: the qp of full-model
    streams and of tensors sent whole (new or reshaped). ``error_feedback``: add the
    quantization loss of an update to the next one after :meth:`rebase` and in
    :meth:`encode_delta` (plain :meth:`encode` needs none: it is closed loop).
    ``predictive``: see :class:`UpdateDecoder`, whose value must match.
    """

    def __init__(self, base: Tensors | None = None, *, error_feedback: bool = False,
                 predictive: float = 0.0, full_qp: int = -38, **options: Any) -> None:
        super().__init__(base, predictive)
        if "differences" in options:
            raise ConfigError("differences is implied by an UpdateEncoder; use encode_full "
                              "for a full-model stream")
        self.options = dict(options)
        self.config = EncodeConfig.from_options(None, **{**_UPDATE_DEFAULTS, **options})
        if self.config.profile != 1:
            raise ConfigError("update chains are an edition-2 tool: they need profile 1")
        self.full_config = dataclasses.replace(self.config, differences=False, tca=False,
                                               hdsp=False, qp=full_qp)
        self.full_qp = full_qp
        self.error_feedback = bool(error_feedback)
        self.residual: dict[str, np.ndarray] = {}
        self.last_target: dict[str, np.ndarray] = {}
        self.last_config: EncodeConfig | None = None
        self._carry: dict[str, np.ndarray] = {}
        self._state = nnr.EncoderState()
        self._shadow = nnr.DecoderState()       # decodes our own streams: the closed loop

    # -- the three kinds of stream ---------------------------------------------------------

    def encode(self, model: Tensors) -> bytes:
        """Code ``model`` (all or some of the tensors) as its difference to the receiver's
        reference; the first stream of a chain without a base is a full model."""
        if not self.reference:
            return self.encode_full(model)
        targets = {}
        for name, value in model.items():
            arr = _stored(value)
            targets[name] = arr if self._is_new(name, arr.shape) else arr - self.reference[name]
        return self._code_update(targets, float32_bytes=_float32_bytes(model))

    def encode_delta(self, delta: Tensors) -> bytes:
        """Code ``delta``, a difference for the receiver to add to its tensors (a tensor the
        receiver does not have, or of another shape, is taken whole). With
        ``error_feedback`` the quantization loss of the previous update is added first."""
        if self.error_feedback:
            self._carry = dict(self.residual)
        return self._code_update({n: _stored(a) for n, a in delta.items()},
                                 float32_bytes=_float32_bytes(delta))

    def encode_full(self, model: Tensors) -> bytes:
        """Code ``model`` (all or some tensors) whole, at ``full_qp``; the receiver replaces
        those tensors. Residuals and predictions of those tensors are dropped."""
        values = {n: _stored(a) for n, a in model.items()}
        self.last_config = self.full_config
        stream = nnr.encode(values, self.full_config, state=self._state)
        self._apply_full(nnr.decode(stream, state=self._shadow))
        for name in values:
            self.residual.pop(name, None)
            self._carry.pop(name, None)
        self.last_target = values
        self.stats.add(len(stream), _float32_bytes(values))
        return stream

    def rebase(self, reference: Tensors) -> None:
        """Take ``reference`` as what the receiver now holds (both ends must rebase to the
        same tensors, e.g. a federated client and the server to the global model the client
        received). With ``error_feedback`` the quantization loss of the last update is added
        to the next one, since the new reference no longer contains it."""
        _End.rebase(self, reference)
        self._carry = dict(self.residual) if self.error_feedback else {}

    # -- internals ---------------------------------------------------------------------------

    def _code_update(self, targets: dict[str, np.ndarray], *, float32_bytes: int) -> bytes:
        """Code the differences ``targets`` (minus the predictions) as one update stream and
        apply the decoded result to the reference, exactly as the receiver will."""
        carry, self._carry = self._carry, {}
        for name, target in targets.items():
            extra = carry.get(name)
            if extra is not None and extra.shape == target.shape and not self._is_new(
                    name, target.shape):
                targets[name] = target + extra
        residuals = {}
        for name in list(targets) + [n for n in self._previous if n not in targets]:
            target = targets.get(name)
            if target is not None and self._is_new(name, target.shape):
                residuals[name] = target
                continue
            if target is None:
                target = np.zeros_like(self.reference[name])
            pred = self._prediction(name)
            residuals[name] = target if pred is None else target - pred
        self.last_config = self._config_for(residuals)
        stream = nnr.encode(residuals, self.last_config, state=self._state)
        deltas = self._apply_update(nnr.decode(stream, state=self._shadow))
        if self.error_feedback:
            self._keep_residual(targets, deltas)
        self.last_target = residuals
        self.stats.add(len(stream), float32_bytes)
        return stream

    def _config_for(self, residuals: Mapping[str, np.ndarray]) -> EncodeConfig:
        """Tensors sent whole (new or reshaped) get the full-model qp (with stochastic or
        bit-depth quantization, which choose each tensor's step themselves, nothing changes)."""
        if self.config.stochastic is not None or self.config.bit_depth is not None:
            return self.config
        whole = {n: self.full_config.qp_for(n, a.ndim) for n, a in residuals.items()
                 if a.dtype.kind == "f" and self._is_new(n, a.shape)}
        if not whole:
            return self.config
        return dataclasses.replace(self.config,
                                   qp_per_tensor={**(self.config.qp_per_tensor or {}), **whole})

    def _keep_residual(self, targets: Mapping[str, np.ndarray],
                       deltas: Mapping[str, np.ndarray]) -> None:
        """What quantization lost of each target (the next update makes up for it)."""
        for name, target in targets.items():
            got = deltas.get(name)
            if target.dtype.kind != "f" or (got is not None and got.shape != target.shape):
                self.residual.pop(name, None)
            else:
                self.residual[name] = target if got is None else target - got

    # -- persistence ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole sender state (options, reference, codec state, residuals, counts)."""
        meta = {"kind": "encoder", "options": _jsonable(self.options),
                "error_feedback": self.error_feedback, "full_qp": self.full_qp}
        return _pack(self, meta, {"residual": self.residual, "carry": self._carry,
                                  "last_target": self.last_target},
                     enc=self._state, dec=self._shadow)

    @classmethod
    def from_bytes(cls, data: bytes) -> "UpdateEncoder":
        meta, arrays = _unpack(data, "encoder")
        obj = cls(None, error_feedback=meta["error_feedback"], predictive=meta["predictive"],
                  full_qp=meta["full_qp"], **meta["options"])
        _restore(obj, meta, arrays)
        obj.residual = arrays.get("residual", {})
        obj.last_target = arrays.get("last_target", {})
        obj._carry = arrays.get("carry", {})
        _restore_codec_state(obj._state, meta["enc"], arrays, "enc")
        _restore_codec_state(obj._shadow, meta["dec"], arrays, "dec")
        return obj


class UpdateDecoder(_End):
    """The receiving end of an update chain.

    ``base``: the tensors this end starts from (the encoder's ``base``). ``predictive``: the
    weight of the previous decoded update added to each residual (0: off); it must be the
    encoder's. :attr:`reference` holds the current tensors.
    """

    def __init__(self, base: Tensors | None = None, *, predictive: float = 0.0) -> None:
        super().__init__(base, predictive)
        self._state = nnr.DecoderState()

    def decode(self, stream: bytes) -> dict[str, np.ndarray]:
        """Apply ``stream`` and return the receiver's tensors after it (all of them; the
        arrays are read-only: copy one before changing it)."""
        self._receive(stream)
        return dict(self.reference)

    def decode_delta(self, stream: bytes) -> dict[str, np.ndarray]:
        """Apply ``stream`` and return what changed: ``{name: decoded difference}``; a new or
        reshaped tensor maps to its value, a tensor without change is absent. For a
        full-model stream: the new tensors minus the ones they replace. Read-only arrays."""
        return self._receive(stream)

    def _receive(self, stream: bytes) -> dict[str, np.ndarray]:
        # A stream is an update when its NDUs signal a parent (a receiver without tensors
        # reads either kind the same way, so the check is skipped there).
        update = bool(self.reference) and "parent_node_id" in \
            nnr.inspect(stream, state=self._state).tools
        state = copy.deepcopy(self._state)      # a stream that fails changes nothing
        decoded = nnr.decode(stream, state=state)
        self._state = state
        changes = self._apply_update(decoded) if update else self._apply_full(decoded)
        self.stats.add(len(stream), _float32_bytes(decoded))
        return changes

    def to_bytes(self) -> bytes:
        """The whole receiver state (reference, codec state, prediction, counts)."""
        return _pack(self, {"kind": "decoder"}, {}, dec=self._state)

    @classmethod
    def from_bytes(cls, data: bytes) -> "UpdateDecoder":
        meta, arrays = _unpack(data, "decoder")
        obj = cls(None, predictive=meta["predictive"])
        _restore(obj, meta, arrays)
        _restore_codec_state(obj._state, meta["dec"], arrays, "dec")
        return obj


# -- serialization: one npz archive, a JSON index, no pickle ------------------------------------

_FORMAT = "nnr.incremental/1"


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            value = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in value.items()}
        elif isinstance(value, (set, frozenset, tuple)):
            value = sorted(value)
        out[key] = value
    try:
        json.dumps(out)
    except TypeError as exc:
        raise ConfigError(f"options cannot be saved: {exc}") from None
    return out


def _pack(end: _End, meta: dict[str, Any], groups: Mapping[str, Mapping[str, np.ndarray]],
          **states: Any) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    index: dict[str, list[list[str]]] = {}

    def put(group: str, tensors: Mapping[str, np.ndarray]) -> None:
        index[group] = []
        for name, arr in tensors.items():
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(arr)
            index[group].append([name, key])

    put("reference", end.reference)
    put("previous", end._previous)
    for group, tensors in groups.items():
        put(group, tensors)
    for prefix, state in states.items():
        put(f"{prefix}.levels", state.levels)
        put(f"{prefix}.hdsp_history", state.hdsp_history)
        meta[prefix] = {"depth": state.depth, "parameter_id": state.parameter_id,
                        "device_id": getattr(state, "device_id", None)}
    meta.update(format=_FORMAT, index=index, predictive=end.predictive,
                stats=dataclasses.asdict(end.stats))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unpack(data: bytes, kind: str) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    try:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes().decode())
            if meta.get("format") != _FORMAT or meta.get("kind") != kind:
                raise ConfigError(f"not a saved nnr update {kind}")
            arrays = {group: {name: npz[key] for name, key in pairs}
                      for group, pairs in meta["index"].items()}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"not a saved nnr update {kind}: {exc}") from None
    return meta, arrays


def _restore(end: _End, meta: Mapping[str, Any], arrays: Mapping[str, dict]) -> None:
    end.reference = {n: _held(a) for n, a in arrays.get("reference", {}).items()}
    end._previous = arrays.get("previous", {})
    end.stats = UpdateStats(**meta["stats"])


def _restore_codec_state(state: Any, meta: Mapping[str, Any],
                         arrays: Mapping[str, dict], prefix: str) -> None:
    state.levels = arrays.get(f"{prefix}.levels", {})
    state.hdsp_history = arrays.get(f"{prefix}.hdsp_history", {})
    state.depth = {k: int(v) for k, v in meta["depth"].items()}
    state.parameter_id = {k: int(v) for k, v in meta["parameter_id"].items()}
    if hasattr(state, "device_id"):
        state.device_id = meta["device_id"]

