"""The client side: a Flower mod that decodes the NNR-coded global model before the
ClientApp sees it and codes the ClientApp's trained model as an NNR update.

::

    app = ClientApp(mods=[nnr_mod])

Messages without an ``nnr.down`` record (a server without :class:`NnrStrategy`) pass
through untouched. The mod keeps both ends of this client's chains in ``Context.state``
(record ``nnr.client``): the decoder of the global model and the encoder of its updates.
"""
from __future__ import annotations

from typing import Any, Callable

from nnr.errors import ConfigError, NnrError
from nnr.incremental import UpdateDecoder, UpdateEncoder
from nnr.integrations.flower._records import (CLIENT_STATE, DOWN, UP, ConfigRecord, Layout,
                                              LinkCoding, Message, edition1_bytes, error_reply,
                                              record_to_tensors, replace_content,
                                              tensors_to_record)

__all__ = ["nnr_mod"]


class _Desync(NnrError):
    """This client's chain state is not the one the server coded against."""


class _ClientEnds:
    """The decoder of the global model and the encoder of this client's updates."""

    def __init__(self, down: UpdateDecoder, up: UpdateEncoder | None, seq: int) -> None:
        self.down, self.up, self.seq = down, up, seq

    @classmethod
    def load(cls, state: Any, message: ConfigRecord) -> "_ClientEnds":
        """The ends for the stream ``message`` carries: new ones when the server starts a
        chain (seq 0), else the saved ones, which must have seen every earlier stream."""
        seq = int(message["seq"])
        if seq == 0:
            return cls(UpdateDecoder(None, predictive=float(message["down_predictive"])), None, 0)
        saved = state.config_records.get(CLIENT_STATE)
        if saved is None or int(saved["seq"]) != seq:
            have = "no saved state" if saved is None else f"state after stream {saved['seq']}"
            raise _Desync(f"out of sync: stream {seq} of the global-model chain, {have}")
        up = UpdateEncoder.from_bytes(bytes(saved["up"])) if "up" in saved else None
        return cls(UpdateDecoder.from_bytes(bytes(saved["down"])), up, seq)

    def save(self, state: Any) -> None:
        record = ConfigRecord({"seq": self.seq + 1, "down": self.down.to_bytes()})
        if self.up is not None:
            record["up"] = self.up.to_bytes()
        state[CLIENT_STATE] = record


def nnr_mod(msg: Message, ctxt: Any, call_next: Callable[[Message, Any], Message]) -> Message:
    """Flower client mod for :class:`~nnr.integrations.flower.NnrStrategy`.

    Incoming: the ``nnr.down`` stream is decoded (an update of this client's copy of the
    global model) and put back as the ArrayRecord the ClientApp expects. Outgoing (train
    replies): the reply's single ArrayRecord is coded as its difference to the global model
    received, with the uplink options the server sent, and replaced by an ``nnr.up`` record.
    A client whose state does not match the server's replies with an error, and the server
    starts a new chain for it.
    """
    down = msg.content.config_records.get(DOWN)
    if down is None:
        return call_next(msg, ctxt)
    try:
        ends = _ClientEnds.load(ctxt.state, down)
        received = ends.down.decode(bytes(down["stream"]))
        record = tensors_to_record(received, Layout.from_json(str(down["layout"])))
    except NnrError as exc:
        return error_reply(msg, f"cannot decode the global model: {exc}")
    replace_content(msg, DOWN, {str(down["record"]): record})
    reply = call_next(msg, ctxt)
    if "up" in down and not reply.has_error():
        try:
            _code_reply(reply, ends, received, down)
        except NnrError as exc:
            reply = error_reply(msg, f"cannot code the update: {exc}")
    ends.save(ctxt.state)
    return reply


def _code_reply(reply: Message, ends: _ClientEnds, received: dict, down: ConfigRecord) -> None:
    arrays = reply.content.array_records
    if len(arrays) != 1:
        raise ConfigError(f"a train reply needs exactly one ArrayRecord, found {len(arrays)}")
    key, record = next(iter(arrays.items()))
    local = record_to_tensors(record)
    coding = LinkCoding.from_json(str(down["up"]))
    if ends.up is None:
        ends.up = UpdateEncoder(None, **coding.encoder_kwargs())
    ends.up.rebase(received)
    stream = ends.up.encode(local)
    up = ConfigRecord({"stream": stream, "record": key, "layout": Layout.of(local).to_json()})
    if bool(down.get("edition1", False)):
        up["edition1_bytes"] = edition1_bytes(ends.up)
    replace_content(reply, key, {UP: up})
