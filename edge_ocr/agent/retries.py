"""Work to try again: files a worker failed on (before their attempts are used up) and camera
captures whose worker died. The agent's loop takes from it before the sources' queue."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")


class RetryQueue(Generic[Item]):
    """First in, first out, each item with the attempt it will be (2 for the first retry)."""

    def __init__(self) -> None:
        self._items: deque[tuple[Item, int]] = deque()

    def put(self, item: Item, attempts: int) -> None:
        self._items.append((item, attempts))

    def put_first(self, item: Item, attempts: int = 1) -> None:
        """Ahead of everything (a read a line trigger waits for)."""
        self._items.appendleft((item, attempts))

    def take(self, wanted: Callable[[Item], bool] = lambda _item: True) -> tuple[Item, int] | None:
        """The oldest item with its attempt, if it is `wanted`; else None (it stays queued)."""
        if self._items and wanted(self._items[0][0]):
            return self._items.popleft()
        return None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return (item for item, _ in list(self._items))
