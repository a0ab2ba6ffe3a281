"""The server side: a strategy wrapper that sends the global model to each client as an NNR
update of the client's last known copy and decodes the clients' NNR-coded updates before the
wrapped strategy aggregates plain arrays.

::

    strategy = NnrStrategy(FedAvg(), up=LinkCoding(qp=-32), down=LinkCoding(qp=-38))
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=30)
    strategy.rounds[-1].up          # {node_id: bytes} of the last round's client updates
"""
from __future__ import annotations

from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any, Iterable

import numpy as np

from nnr.errors import NnrError
from nnr.incremental import UpdateDecoder, UpdateEncoder
from nnr.integrations.flower._records import (DOWN, UP, ArrayRecord, ConfigRecord, Layout,
                                              LinkCoding, Message, apply_delta,
                                              edition1_bytes, record_to_tensors,
                                              replace_content, tensors_to_record)

from flwr.app import MetricRecord
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

__all__ = ["NnrStrategy", "RoundBytes"]


@dataclass
class RoundBytes:
    """NNR stream bytes of one round, per client node (``{node_id: bytes}``).

    ``down``: server to client with the train messages, ``evaluate_down``: with the evaluate
    messages, ``up``: client to server. The ``*_edition1`` maps hold the size of the same
    differences coded edition-1 style (standalone profile-0 streams, no TCA or HDSP), when
    the strategy measures it. ``float32_bytes``: the global model as float32 arrays (what one
    uncompressed transfer of it costs)."""

    round: int
    float32_bytes: int = 0
    down: dict[int, int] = field(default_factory=dict)
    evaluate_down: dict[int, int] = field(default_factory=dict)
    up: dict[int, int] = field(default_factory=dict)
    down_edition1: dict[int, int] = field(default_factory=dict)
    up_edition1: dict[int, int] = field(default_factory=dict)

    def train_metrics(self) -> dict[str, float]:
        """The train-phase figures as Flower metrics (``nnr.`` keys)."""
        out = {"nnr.model_float32_bytes": self.float32_bytes}
        for label, sizes, ed1 in (("down", self.down, self.down_edition1),
                                  ("up", self.up, self.up_edition1)):
            out[f"nnr.{label}.bytes"] = sum(sizes.values())
            out[f"nnr.{label}.bytes_per_client"] = float(np.mean(list(sizes.values()))) \
                if sizes else 0.0
            if ed1:
                out[f"nnr.{label}.edition1_bytes"] = sum(ed1.values())
        return out


class _Chains:
    """Both ends the server keeps for one client: the encoder of the global model (its
    reference is the client's copy) and the decoder of the client's updates."""

    def __init__(self, down: LinkCoding) -> None:
        self.down = UpdateEncoder(None, **down.encoder_kwargs())
        self.up: UpdateDecoder | None = None
        self.seq = 0


class NnrStrategy(Strategy):
    """Wrap a Flower strategy (FedAvg, FedAdam, ...) so that model arrays travel as NNR
    incremental streams both ways; clients use :func:`~nnr.integrations.flower.nnr_mod`.

    Each client gets the global model as an update of its own copy (closed loop: the copy
    stays within one quantization step of the global model). A client's update is coded as
    the difference between its trained model and that copy; the server adds the decoded
    difference to the exact global model, so the downlink's quantization error never enters
    the aggregate.

    ``up`` / ``down``: :class:`LinkCoding` of client updates and of the global model.
    ``measure_edition1``: also code every difference edition-1 style and report its size
    (costs encoder time; for comparisons). Per-round byte counts are in :attr:`rounds` and in
    the train metrics (keys ``nnr.up.bytes``, ``nnr.down.bytes_per_client`` ...).

    The wrapped strategy sees plain ArrayRecords: it configures messages as usual, and its
    ``aggregate_train`` receives the decoded client models. A client that replies with an
    error or not at all gets a new chain (a full model) next time.
    """

    def __init__(self, strategy: Strategy, *, up: LinkCoding | None = None,
                 down: LinkCoding | None = None, measure_edition1: bool = False) -> None:
        self.strategy = strategy
        self.up = up or LinkCoding()
        self.down = down or LinkCoding(qp=-38, error_feedback=False)
        self.measure_edition1 = measure_edition1
        self.rounds: list[RoundBytes] = []
        self._chains: dict[int, _Chains] = {}
        self._awaiting: set[int] = set()
        self._global: dict[str, np.ndarray] = {}        # the model sent for training

    def __repr__(self) -> str:
        return f"NnrStrategy({self.strategy!r}, up={self.up}, down={self.down})"

    def summary(self) -> None:
        log(INFO, "\t├──> NNR coding (nnr.integrations.flower):")
        log(INFO, "\t│\t├── client -> server: %s", self.up)
        log(INFO, "\t│\t└── server -> client: %s", self.down)
        self.strategy.summary()

    # -- train ---------------------------------------------------------------------------------

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Any) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        return self._code_messages(server_round, messages, train=True)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        counts = self._round(server_round)
        kept = [r for r in replies if self._decode_reply(r, counts)]
        self._reset_silent()
        arrays, metrics = self.strategy.aggregate_train(server_round, kept)
        if kept:
            metrics = metrics if metrics is not None else MetricRecord()
            for key, value in counts.train_metrics().items():
                metrics[key] = value
        return arrays, metrics

    # -- evaluate ------------------------------------------------------------------------------

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Any) -> Iterable[Message]:
        messages = list(self.strategy.configure_evaluate(server_round, arrays, config, grid))
        return self._code_messages(server_round, messages, train=False)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        replies = list(replies)
        for reply in replies:
            self._awaiting.discard(reply.metadata.src_node_id)
            if reply.has_error():
                self._reset(reply.metadata.src_node_id, reply.error.reason)
        self._reset_silent()
        return self.strategy.aggregate_evaluate(server_round, replies)

    # -- internals -----------------------------------------------------------------------------

    def _round(self, server_round: int) -> RoundBytes:
        if not self.rounds or self.rounds[-1].round != server_round:
            self.rounds.append(RoundBytes(server_round))
        return self.rounds[-1]

    def _code_messages(self, server_round: int, messages: list[Message], *, train: bool
                       ) -> list[Message]:
        counts = self._round(server_round)
        models: dict[int, tuple[dict, Layout]] = {}      # the same record goes to every node
        for msg in messages:
            records = msg.content.array_records
            if len(records) != 1:
                log(WARNING, "NnrStrategy: a message with %d ArrayRecords is sent uncoded",
                    len(records))
                continue
            key, record = next(iter(records.items()))
            if id(record) not in models:
                tensors = record_to_tensors(record)
                models[id(record)] = (tensors, Layout.of(tensors))
                counts.float32_bytes = 4 * sum(int(a.size) for a in tensors.values())
                if train:
                    self._global = tensors
            self._code_message(msg, key, *models[id(record)], counts, train=train)
        return messages

    def _code_message(self, msg: Message, key: str, model: dict, layout: Layout,
                      counts: RoundBytes, *, train: bool) -> None:
        node = msg.metadata.dst_node_id
        chains = self._chains.get(node)
        if chains is None:
            chains = self._chains[node] = _Chains(self.down)
        stream = chains.down.encode(model)
        down = ConfigRecord({"stream": stream, "seq": chains.seq, "record": key,
                             "layout": layout.to_json(), "down_predictive": self.down.predictive,
                             "edition1": self.measure_edition1})
        if train:
            down["up"] = self.up.to_json()
        chains.seq += 1
        replace_content(msg, key, {DOWN: down})
        sizes = counts.down if train else counts.evaluate_down
        sizes[node] = sizes.get(node, 0) + len(stream)
        if self.measure_edition1 and train:
            counts.down_edition1[node] = edition1_bytes(chains.down)
        self._awaiting.add(node)

    def _decode_reply(self, reply: Message, counts: RoundBytes) -> bool:
        """Decode a train reply in place; False when it cannot go to the aggregation."""
        node = reply.metadata.src_node_id
        self._awaiting.discard(node)
        if reply.has_error():
            self._reset(node, reply.error.reason)
            return False
        up = reply.content.config_records.get(UP)
        if up is None:
            return True                       # not coded (a client without the mod)
        chains = self._chains.get(node)
        if chains is None:
            self._reset(node, "a coded update from a client without a chain")
            return False
        try:
            if chains.up is None:
                chains.up = UpdateDecoder(None, predictive=self.up.predictive)
            chains.up.rebase(chains.down.reference)
            delta = chains.up.decode_delta(bytes(up["stream"]))
            layout = Layout.from_json(str(up["layout"]))
            record = tensors_to_record(apply_delta(self._global, delta, layout), layout)
        except NnrError as exc:
            self._reset(node, f"cannot decode its update: {exc}")
            return False
        replace_content(reply, UP, {str(up["record"]): record})
        counts.up[node] = len(bytes(up["stream"]))
        if "edition1_bytes" in up:
            counts.up_edition1[node] = int(up["edition1_bytes"])
        return True

    def _reset(self, node: int, reason: str) -> None:
        if self._chains.pop(node, None) is not None:
            log(WARNING, "NnrStrategy: node %s starts a new chain (%s)", node, reason)

    def _reset_silent(self) -> None:
        """Nodes that were sent a stream and did not answer may not have decoded it."""
        for node in self._awaiting:
            self._reset(node, "no reply")
        self._awaiting.clear()
