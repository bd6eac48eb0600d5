"""The producer thread and the bridge that carries its items into the event loop.

The hand-off between threads lives here: sources run *in* the producer thread (and the
websocket source's library keeps its own reader thread), but only this module starts the
producer thread and crosses from it into the loop. :class:`Bridge` has two faces, janus-style:

* the sync face, :meth:`Bridge.put`, called in the producer thread, and :meth:`Bridge.signal`
  for the rare event that is not a candle (a reconnect's gap, for the history fill);
* the async face, :meth:`Bridge.get_batch`, awaited in the event loop (the hub's pump), and
  :meth:`Bridge.take_events`.

A put into an empty bridge schedules one ``loop.call_soon_threadsafe`` wake-up; the loop then
drains everything pending in one batch, so a burst of N items costs one wake-up, not N. Nothing
polls: the loop side awaits an event that only a put or a close sets.

**Full bridge:** :meth:`Bridge.put` *blocks the producer thread* until the loop drains (counted
in ``full_waits``). Nothing is dropped; the upstream socket is simply read later, which is the
backpressure the broker sees. The loop side never blocks on the thread.

**Close:** :meth:`Bridge.close` may be called from either side and is idempotent. A blocked or
later ``put`` raises :class:`BridgeClosed`; ``get_batch`` returns what is still pending, then
raises :class:`anyio.EndOfStream`.

:class:`ProducerThread` runs a :class:`~candlecast.upstream.source.Source` in a daemon thread with
a stop event, and closes the bridge when the source ends, whatever the reason; :meth:`~ProducerThread.stop`
closes it from the loop side.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

from ..model.candle import Candle
from .source import Source

__all__ = ["Bridge", "BridgeClosed", "ProducerThread"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class BridgeClosed(Exception):
    """Raised in the producer thread by :meth:`Bridge.put` once the bridge is closed."""


class Bridge(Generic[T]):
    """A bounded thread-to-loop queue. Create it in the event loop it will deliver to."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._loop = asyncio.get_running_loop()
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._ready = asyncio.Event()
        self._notified = False  # a wake-up is scheduled or the loop is draining
        self._closed = False
        self._interrupted = False  # loop side: the next get_batch returns even if empty
        self._events: deque[object] = deque()  # signalled by the thread, taken by the loop
        #: Loop wake-ups scheduled by put (one per empty -> non-empty transition).
        self.wakeups = 0
        #: Puts that had to wait for room.
        self.full_waits = 0

    # -- sync face (producer thread) --------------------------------------------------------

    def put(self, item: T) -> None:
        """Append ``item``; blocks while the bridge is full. Raises :class:`BridgeClosed`."""
        with self._lock:
            if len(self._items) >= self.maxsize and not self._closed:
                self.full_waits += 1
                while len(self._items) >= self.maxsize and not self._closed:
                    self._not_full.wait()
            if self._closed:
                raise BridgeClosed
            self._items.append(item)
            if self._notified:
                return
            self._notified = True
            self.wakeups += 1
        self._call_soon(self._ready.set)

    def signal(self, event: object) -> None:
        """Hand ``event`` (not a candle) to the loop: the waiting :meth:`get_batch` returns, and
        :meth:`take_events` has it. Never blocks (events are rare and small). Producer thread."""
        with self._lock:
            if self._closed:
                return
            self._events.append(event)
            if self._notified:
                return
            self._notified = True
            self.wakeups += 1
        self._call_soon(self._ready.set)

    # -- async face (event loop) ------------------------------------------------------------

    async def get_batch(self, limit: int = 4096) -> list[T]:
        """Wait for items and return up to ``limit`` of them, oldest first.

        Raises :class:`anyio.EndOfStream` once the bridge is closed and empty.
        """
        while True:
            with self._lock:
                items = self._items
                if items:
                    if len(items) <= limit:
                        batch = list(items)
                        items.clear()
                    else:
                        batch = [items.popleft() for _ in range(limit)]
                    if not items:
                        self._notified = False  # the next put wakes us again
                    self._not_full.notify_all()
                    return batch
                if self._closed:
                    raise anyio.EndOfStream
                if self._events:
                    return []  # the caller takes them
                if self._interrupted:
                    self._interrupted = False
                    return []
                self._notified = False
                self._ready.clear()
            await self._ready.wait()

    def take_events(self) -> list[object]:
        """Every event signalled since the last call, oldest first. Event loop."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def interrupt(self) -> None:
        """Loop side: make the waiting (or the next) :meth:`get_batch` return, with an empty
        batch if nothing is pending (the feed has something else to deliver)."""
        self._interrupted = True
        self._ready.set()

    # -- either side --------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse further puts, wake blocked putters and the loop. Idempotent, any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._not_full.notify_all()
        self._call_soon(self._ready.set)

    def qsize(self) -> int:
        return len(self._items)

    def _call_soon(self, callback: Callable[[], object]) -> None:
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            pass


class ProducerThread:
    """Runs ``source.run(emit, stop)`` in a daemon thread; ``emit`` puts into ``bridge``.

    When the source returns or raises, the bridge is closed so the loop side sees the end.
    An unexpected exception is logged with its traceback and kept in :attr:`error`.
    """

    def __init__(
        self,
        source: Source,
        emit: Callable[[Candle], None],
        bridge: Bridge[Any],
        *,
        name: str = "candlecast-producer",
    ) -> None:
        self.source = source
        self.emit = emit
        self.bridge = bridge
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            self.source.run(self.emit, self.stop_event)
        except BridgeClosed:
            pass
        except BaseException as exc:
            self.error = exc
            log.exception("producer thread failed; the feed has stopped")
        finally:
            self.bridge.close()

    async def stop(self, grace: float = 1.0) -> bool:
        """Set the stop event, unblock the source and the bridge, and wait for the thread.

        Returns whether the thread ended within ``grace`` seconds; a thread that did not is a daemon
        and is abandoned (it cannot hold the process open).
        """
        self.stop_event.set()
        self.source.wake()
        self.bridge.close()
        if not self._thread.is_alive():
            return True
        await anyio.to_thread.run_sync(self._thread.join, grace, abandon_on_cancel=True)
        if self._thread.is_alive():
            log.warning("producer thread still running %.1fs after stop; abandoning it", grace)
            return False
        return True
