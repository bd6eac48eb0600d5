"""The thread -> loop bridge, with real threads."""

from __future__ import annotations

import threading

import anyio
import pytest

from candlecast.model.candle import Candle
from candlecast.upstream.bridge import Bridge, BridgeClosed, ProducerThread
from candlecast.upstream.source import Emit, Upstream


def producer(bridge: Bridge[int], items: range) -> threading.Thread:
    def run() -> None:
        for i in items:
            bridge.put(i)

    t = threading.Thread(target=run)
    t.start()
    return t


async def collect(bridge: Bridge[int], n: int) -> list[int]:
    got: list[int] = []
    with anyio.fail_after(10):
        while len(got) < n:
            got.extend(await bridge.get_batch())
    return got


async def test_bridge_delivers_everything_in_order_from_a_thread() -> None:
    bridge: Bridge[int] = Bridge(maxsize=64)
    t = producer(bridge, range(20_000))
    assert await collect(bridge, 20_000) == list(range(20_000))
    t.join()


async def test_a_burst_into_a_busy_loop_costs_one_wakeup() -> None:
    """While the loop is busy, 1000 puts schedule a single wake-up and drain as one batch."""
    bridge: Bridge[int] = Bridge(maxsize=10_000)
    t = producer(bridge, range(1000))
    t.join()  # blocks the loop on purpose: nothing of the loop runs during the burst
    assert bridge.wakeups == 1
    assert await bridge.get_batch() == list(range(1000))


async def test_bridge_wakes_the_loop_after_idle() -> None:
    bridge: Bridge[int] = Bridge(maxsize=8)
    for round_ in range(3):
        t = producer(bridge, range(round_, round_ + 1))
        with anyio.fail_after(10):
            assert await bridge.get_batch() == [round_]
        t.join()
    assert bridge.wakeups == 3


async def test_full_bridge_blocks_the_producer_until_drained() -> None:
    bridge: Bridge[int] = Bridge(maxsize=4)
    t = producer(bridge, range(100))
    got = await collect(bridge, 100)
    t.join()
    assert got == list(range(100))
    assert bridge.full_waits > 0
    assert bridge.qsize() == 0


async def test_batch_limit_is_respected() -> None:
    bridge: Bridge[int] = Bridge(maxsize=100)
    producer(bridge, range(10)).join()
    assert await bridge.get_batch(limit=3) == [0, 1, 2]
    assert await bridge.get_batch(limit=100) == list(range(3, 10))


async def test_close_from_the_thread_ends_the_loop_side_after_the_rest() -> None:
    bridge: Bridge[int] = Bridge(maxsize=100)

    def run() -> None:
        for i in range(5):
            bridge.put(i)
        bridge.close()

    t = threading.Thread(target=run)
    t.start()
    got: list[int] = []
    with anyio.fail_after(10):
        while True:
            try:
                got.extend(await bridge.get_batch())
            except anyio.EndOfStream:
                break
    t.join()
    assert got == [0, 1, 2, 3, 4]


async def test_close_from_the_loop_unblocks_a_blocked_producer() -> None:
    bridge: Bridge[int] = Bridge(maxsize=1)
    errors: list[BaseException] = []
    blocked = threading.Event()

    def run() -> None:
        try:
            bridge.put(0)
            blocked.set()
            bridge.put(1)  # blocks: the bridge is full
        except BridgeClosed as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    with anyio.fail_after(10):
        await anyio.to_thread.run_sync(blocked.wait)
    bridge.close()
    bridge.close()  # idempotent
    await anyio.to_thread.run_sync(t.join)
    assert len(errors) == 1
    assert await bridge.get_batch() == [0]
    with pytest.raises(anyio.EndOfStream):
        await bridge.get_batch()
    with pytest.raises(BridgeClosed):
        bridge.put(2)


async def test_bridge_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Bridge(maxsize=0)


class Blocking:
    """A source that emits, then blocks until woken."""

    def __init__(self) -> None:
        self.upstream = Upstream()
        self.malformed: dict[str, int] = {}
        self.woken = threading.Event()

    def run(self, emit: Emit, stop: threading.Event) -> None:
        emit(Candle("A", 1, 1, 1.0, 1.0, 1.0, 1.0))
        self.woken.wait()

    def wake(self) -> None:
        self.woken.set()


class Crashing:
    upstream = Upstream()
    malformed: dict[str, int] = {}

    def run(self, emit: Emit, stop: threading.Event) -> None:
        raise RuntimeError("feed bug")

    def wake(self) -> None:
        pass


async def test_producer_thread_stops_when_woken_and_closes_the_bridge() -> None:
    bridge: Bridge[Candle] = Bridge(maxsize=8)
    source = Blocking()
    thread = ProducerThread(source, bridge.put, bridge)
    thread.start()
    with anyio.fail_after(10):
        assert [c.s for c in await bridge.get_batch()] == ["A"]
        assert await thread.stop() is True
    assert source.woken.is_set()
    with pytest.raises(BridgeClosed):  # closed
        bridge.put(Candle("A", 1, 1, 1.0, 1.0, 1.0, 1.0))


async def test_producer_thread_failure_is_kept_and_ends_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    bridge: Bridge[Candle] = Bridge(maxsize=8)
    thread = ProducerThread(Crashing(), bridge.put, bridge)
    thread.start()
    with anyio.fail_after(10), pytest.raises(anyio.EndOfStream):
        await bridge.get_batch()
    assert isinstance(thread.error, RuntimeError)
    assert "producer thread failed" in caplog.text
    assert await thread.stop() is True


async def test_an_event_signalled_by_the_thread_wakes_the_waiting_loop_without_a_candle() -> None:
    """A reconnect's gap crosses through the bridge too: get_batch returns (empty), and the
    event is taken once, in order; a signal after close is dropped."""
    bridge: Bridge[int] = Bridge(maxsize=8)

    async def wait() -> list[int]:
        return await bridge.get_batch()

    async with anyio.create_task_group() as tg:
        got: list[list[int]] = []

        async def getter() -> None:
            got.append(await wait())

        tg.start_soon(getter)
        await anyio.wait_all_tasks_blocked()

        def signal_two() -> None:
            bridge.signal("gap-1")
            bridge.signal("gap-2")

        t = threading.Thread(target=signal_two)
        t.start()
    t.join()
    assert got == [[]]
    assert bridge.take_events() == ["gap-1", "gap-2"]
    assert bridge.take_events() == []
    bridge.put(1)
    bridge.signal("gap-3")
    assert await bridge.get_batch() == [1]  # candles first, the event stays for the taker
    assert bridge.take_events() == ["gap-3"]
    bridge.close()
    bridge.signal("late")
    assert bridge.take_events() == []
