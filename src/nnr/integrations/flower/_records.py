"""What the client mod and the server wrapper agree on: record names, the coding options of
each direction, and conversions between Flower records and ``{name: ndarray}``."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

import nnr
from nnr.errors import ConfigError, UnsupportedFeatureError
from nnr.incremental import UpdateEncoder

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, RecordDict
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise UnsupportedFeatureError(
        "nnr.integrations.flower needs Flower with the Message API (flwr>=1.21): "
        "pip install 'nnr[flower]'") from _exc

__all__ = ["LinkCoding", "DOWN", "UP", "CLIENT_STATE", "ERROR_PREFIX", "Layout",
           "record_to_tensors", "tensors_to_record", "apply_delta", "edition1_bytes", "error_reply",
           "replace_content", "Array", "ArrayRecord", "ConfigRecord", "Message", "RecordDict"]

#: ConfigRecord carrying a server-to-client stream (replaces the ArrayRecord of the message).
DOWN = "nnr.down"
#: ConfigRecord carrying a client-to-server stream (replaces the ArrayRecord of the reply).
UP = "nnr.up"
#: ConfigRecord in the client's ``Context.state`` holding both ends of its chains.
CLIENT_STATE = "nnr.client"
#: Error replies of the mod start with this; the server then restarts that client's chains.
ERROR_PREFIX = "nnr:"


@dataclass(frozen=True)
class LinkCoding:
    """How one direction of the link is coded (the server sends the uplink's to clients).

    ``qp`` / ``nonweight_qp`` / ``dq`` / ``tca`` / ``hdsp``: options of the update streams
    (:class:`nnr.EncodeConfig`); ``full_qp``: the qp of a full model (the first stream of a
    chain) and of tensors sent whole. ``error_feedback``: carry what quantization lost from
    one update to the next (uplink; the downlink is closed loop, which has the same effect).
    ``predictive``: code each update as its difference to this fraction of the previous one
    (0: off). ``options``: further :class:`nnr.EncodeConfig` fields (``row_skip`` ...).
    """

    qp: int = -32
    nonweight_qp: int | None = None
    dq: bool = True
    tca: bool = True
    hdsp: bool = True
    error_feedback: bool = True
    predictive: float = 0.0
    full_qp: int = -38
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        UpdateEncoder(None, **self.encoder_kwargs())          # validates every option

    def encode_options(self) -> dict[str, Any]:
        """The :class:`nnr.EncodeConfig` fields of the update streams."""
        return dict(qp=self.qp, nonweight_qp=self.nonweight_qp, dq=self.dq, tca=self.tca,
                    hdsp=self.hdsp, **dict(self.options))

    def encoder_kwargs(self) -> dict[str, Any]:
        return dict(self.encode_options(), error_feedback=self.error_feedback,
                    predictive=self.predictive, full_qp=self.full_qp)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self) | {"options": dict(self.options)})

    @classmethod
    def from_json(cls, text: str) -> "LinkCoding":
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad link coding options: {exc}") from None


def edition1_bytes(encoder: UpdateEncoder) -> int:
    """Size of the encoder's last coded tensors (``last_target``) coded edition-1 style with
    the same quantization (``last_config``): one standalone profile-0 stream, without parent
    signalling, temporal context adaptation or HDSP."""
    if encoder.last_config is None:
        return 0
    cfg = dataclasses.replace(encoder.last_config, profile=0, differences=False, tca=False,
                              hdsp=False, row_skip=False)
    return len(nnr.encode(encoder.last_target, cfg))


@dataclass(frozen=True)
class Layout:
    """Names (record order), dtypes and shapes of an ArrayRecord's arrays."""

    entries: tuple[tuple[str, str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, tensors: Mapping[str, np.ndarray]) -> "Layout":
        return cls(tuple((n, str(a.dtype), tuple(int(d) for d in a.shape))
                         for n, a in tensors.items()))

    def to_json(self) -> str:
        return json.dumps([[n, d, list(s)] for n, d, s in self.entries])

    @classmethod
    def from_json(cls, text: str) -> "Layout":
        return cls(tuple((str(n), str(d), tuple(int(x) for x in s))
                         for n, d, s in json.loads(text)))


def record_to_tensors(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def tensors_to_record(tensors: Mapping[str, np.ndarray], layout: Layout) -> ArrayRecord:
    """The tensors of ``layout`` as an ArrayRecord in its order, dtypes and shapes (decoded
    floats are float32, integers int64 and 0-d tensors shape (1,) until here)."""
    out = {}
    for name, dtype, shape in layout.entries:
        if name not in tensors:
            raise ConfigError(f"tensor {name!r} of the record is missing after decoding")
        arr = np.asarray(tensors[name])
        if arr.shape != shape:
            if arr.size != int(np.prod(shape, dtype=np.int64)):
                raise ConfigError(f"tensor {name!r}: decoded shape {arr.shape}, record {shape}")
            arr = arr.reshape(shape)
        out[name] = Array(np.array(arr, dtype=dtype, order="C"))    # keeps 0-d arrays 0-d
    return ArrayRecord(out)


def apply_delta(model: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray],
                layout: Layout) -> dict[str, np.ndarray]:
    """The tensors of ``layout``: ``model`` plus the decoded ``delta`` (a tensor that
    ``model`` lacks or has in another shape is the delta itself: it was sent whole)."""
    out = {}
    for name, _, shape in layout.entries:
        base = model.get(name)
        d = delta.get(name)
        coded_shape = (np.shape(base) or (1,)) if base is not None else None
        if base is not None and (d is None or d.shape == coded_shape):
            out[name] = base if d is None else np.asarray(base) + d.reshape(np.shape(base))
        elif d is not None:
            out[name] = d
        else:
            raise ConfigError(f"update for tensor {name!r} of unknown value")
    return out


def replace_content(msg: Message, drop: str, put: Mapping[str, Any]) -> None:
    """Give ``msg`` a new RecordDict: its records less ``drop``, plus ``put`` (the old
    RecordDict may be shared with other messages, so it is not changed)."""
    records = {k: v for k, v in msg.content.items() if k != drop}
    records.update(put)
    msg.content = RecordDict(records)


def error_reply(msg: Message, reason: str) -> Message:
    from flwr.common.constant import ErrorCode
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION,
                         reason=f"{ERROR_PREFIX} {reason}"), reply_to=msg)
