"""A Flower Grid that runs a ClientApp in this process, one node after the other.

Each node has its own ``Context`` (``partition-id``, persistent ``state``), and every message
and reply is deep-copied on the way, as a transport would, so that no object is shared
between the server and a client. ``drop`` names nodes whose messages are lost (a client that
goes away); ``forget`` makes a node lose its state before the next message (a restarted
client). Used by the tests and for quick experiments; the real simulation runtime
(``flwr.simulation.run_simulation``) is exercised separately.
"""
from __future__ import annotations

import copy
import random
import uuid
from typing import Any, Iterable

from flwr.app import Context, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


class LocalGrid(Grid):
    def __init__(self, client_app: Any, num_nodes: int, seed: int = 0) -> None:
        if TaskIdentity._run_id is None:         # what the runtime sets for a ServerApp
            TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, SUPERLINK_NODE_ID, 0
        rng = random.Random(seed)
        self.app = client_app
        self.contexts = {}
        for i in range(num_nodes):
            node_id = rng.getrandbits(63)
            self.contexts[node_id] = Context(
                run_id=1, node_id=node_id, state=RecordDict(), run_config={},
                node_config={"partition-id": i, "num-partitions": num_nodes})
        self.drop: set[int] = set()
        self.forget: set[int] = set()
        self.wire: list[tuple[int, RecordDict]] = []      # (node, content) as sent
        self._run = None

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("LocalGrid delivers with send_and_receive only")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("LocalGrid delivers with send_and_receive only")

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            node = msg.metadata.dst_node_id
            if node in self.drop:
                continue
            if node in self.forget:
                self.contexts[node].state = RecordDict()
                self.forget.discard(node)
            self.wire.append((node, copy.deepcopy(msg.content)))
            incoming = Message(copy.deepcopy(msg.content), metadata=copy.deepcopy(msg.metadata))
            reply = self.app(incoming, self.contexts[node])
            replies.append(copy.deepcopy(reply))
        return replies
