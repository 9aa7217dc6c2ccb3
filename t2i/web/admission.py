"""One limit for model work from every front end (the page, /sdapi/v1, /v1/images): a few run at once, a bounded
number wait in order, and the rest are refused at once.

Gradio's own queue covers only Gradio events; plain REST routes never pass through it. So the limit lives here,
and the Studio takes a place for every generation whichever front end asked for it.
"""

from __future__ import annotations

import threading
from collections import deque

from t2i.request import RequestError

RECHECK_S = 0.5  # a waiting run also looks at its cancel event this often (stop() wakes it at once)


class QueueFull(RequestError):
    """Every running place and every queue place is taken; the caller should try again later."""


class Admission:
    """`limit` runs at once, up to `queue_size` more waiting first come, first served; beyond that, QueueFull."""

    def __init__(self, limit: int, queue_size: int):
        self.limit = max(1, limit)
        self.queue_size = max(0, queue_size)
        self._running = 0
        self._waiting: deque[object] = deque()
        self._condition = threading.Condition()

    def acquire(self, cancel: threading.Event | None = None) -> bool:
        """Take a running place, waiting in line for one; False when `cancel` was set while waiting.

        Raises QueueFull at once when the line is already `queue_size` long.
        """
        with self._condition:
            if self._running < self.limit and not self._waiting:
                self._running += 1
                return True
            if len(self._waiting) >= self.queue_size:
                raise self._full()
            turn = object()
            self._waiting.append(turn)
            try:
                while not (self._waiting[0] is turn and self._running < self.limit):
                    if cancel is not None and cancel.is_set():
                        return False
                    self._condition.wait(RECHECK_S)
                self._waiting.popleft()
                self._running += 1
                return True
            finally:
                if turn in self._waiting:  # cancelled while waiting: leave the line
                    self._waiting.remove(turn)
                self._condition.notify_all()

    def release(self) -> None:
        """Give back a running place taken by acquire()."""
        with self._condition:
            self._running -= 1
            self._condition.notify_all()

    def wake(self) -> None:
        """Let waiting runs look at their cancel events now (after a stop)."""
        with self._condition:
            self._condition.notify_all()

    def counts(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._condition:
            return self._running, len(self._waiting)

    def refuse_if_full(self) -> None:
        """Raise QueueFull when a new run would be refused now (a front end's early check, before it does any work
        for the request; acquire() decides)."""
        with self._condition:
            if self._running >= self.limit and len(self._waiting) >= self.queue_size:
                raise self._full()

    def _full(self) -> QueueFull:
        return QueueFull(f"the server is busy: {self._running} running and {len(self._waiting)} waiting; "
                         "try again later")
