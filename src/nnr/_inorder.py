"""Work that runs concurrently but must come back in submission order (units of a stream).

Shared by the encoder and the decoder: up to ``window`` items may wait behind the one at the
head; beyond that, more may be submitted while the head is still running as long as together
they are no larger than it (sizes in tensor values, given by the caller). So one large tensor
does not leave the other workers idle, and what waits, finished, behind it stays within its
size.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterator


class InOrder:
    def __init__(self, window: int) -> None:
        self.window = window
        self._items: deque = deque()   # (item, future or None, size)
        self._behind = 0               # size of the items after the head

    def push(self, item: Any, future: Any, size: int) -> Iterator[tuple[Any, Any]]:
        """Adds ``item`` (``future`` None: nothing to wait for) and yields ``(item, future)``
        for every item at the head that may leave: finished, or held back too long."""
        if self._items:
            self._behind += size
        self._items.append((item, future, size))
        while self._items:
            _, head, head_size = self._items[0]
            if not (head is None or head.done()
                    or (len(self._items) > self.window and self._behind > head_size)):
                break
            yield self._pop()

    def drain(self) -> Iterator[tuple[Any, Any]]:
        """Every item left, in order (the caller waits on their futures)."""
        while self._items:
            yield self._pop()

    def _pop(self) -> tuple[Any, Any]:
        item, future, _ = self._items.popleft()
        if self._items:
            self._behind -= self._items[0][2]
        return item, future
