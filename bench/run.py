"""Fan-out benchmark: a fake broker and many clients, with a relay in between.

    .venv/bin/python -m bench.run                 # every scenario, all three relays
    .venv/bin/python -m bench.run --quick         # shorter runs
    .venv/bin/python -m bench.run --scenario 200x100 --relay candlecast

The benchmark process is the broker: it stamps each seed message's ``time`` with the wall clock
(epoch microseconds) at send, and ``ot`` with a global sequence number. The relay under test
runs as its own process, connected to the broker. Clients run in worker processes (picows, many
connections each) and check order, duplicates and loss, and measure delivery latency. CPU and
memory of the relay come from /proc. Everything is on 127.0.0.1 and every run ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import AsyncIterator
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve

from tests.support import free_port, stalled_socket

SYMBOLS = [f"SYM{i}" for i in range(8)]
TICK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    rate: int
    batch: bool = False
    stalled: int = 0
    seconds: float | None = None  # overrides --seconds (stalled runs need time to fill buffers)


SCENARIOS = [
    Scenario("200x100", 200, 100),
    Scenario("10x100", 10, 100),  # few clients: the fixed cost per incoming candle
    Scenario("200x500", 200, 500),
    Scenario("200x500 batch", 200, 500, batch=True),
    Scenario("1000x20", 1000, 20),
    Scenario("5000x4", 5000, 4),
    Scenario("20x3000 +2 stalled", 20, 3000, stalled=2, seconds=20),
    Scenario("20x3000", 20, 3000, seconds=20),  # the same without stalled clients, for the ratio
]
RELAYS = ["candlecast", "raw", "naive", "scale"]
#: Run when no --relay is given; "scale" (candlecast through Redis: ingest + 2 edges) is asked for by name.
DEFAULT_RELAYS = ["candlecast", "raw", "naive"]


def py_spy() -> str:
    """py-spy beside this interpreter (the dev lock installs it into the venv), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.path.exists(beside) else "py-spy"


# -- clients (worker processes) --------------------------------------------------------------


def client_worker(url: str, n: int, stalled: int, conn: Any, start_seq_box: Any) -> None:
    asyncio.run(_client_main(url, n, stalled, conn, start_seq_box))


async def _client_main(url: str, n: int, stalled: int, pipe: Any, start_seq_box: Any) -> None:
    from picows import WSListener, WSMsgType, ws_connect

    now_us = time.time_ns

    class Listener(WSListener):
        def __init__(self) -> None:
            self.count = 0
            self.last = -1
            self.disorder = 0
            self.lat = array("q")
            self.close_code: int | None = None
            self.min_seq = 1 << 62  # count nothing before the window opens

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                self.close_code = int(frame.get_close_code())
                transport.disconnect()
                return
            if frame.msg_type != WSMsgType.TEXT:
                return
            msg = orjson.loads(frame.get_payload_as_bytes())
            items = msg if isinstance(msg, list) else [msg]
            t = now_us() // 1000
            start = self.min_seq
            for m in items:
                if "ot" not in m:
                    continue
                seq = m["ot"]
                if seq <= self.last:
                    self.disorder += 1
                self.last = seq
                if seq >= start:
                    self.count += 1
                    self.lat.append(t - m["t"])

    listeners: list[Any] = []
    transports: list[Any] = []

    def small_buffer(parsed: Any) -> socket.socket:
        """A stalled client's socket: a 4 KiB receive buffer, so the server's buffers fill."""
        return stalled_socket()

    for i in range(n):
        factory = small_buffer if i < stalled else None
        transport, listener = await ws_connect(Listener, url, websocket_handshake_timeout=30, socket_factory=factory)
        if i < stalled:
            transport.underlying_transport.pause_reading()
        listeners.append(listener)
        transports.append(transport)
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "start": the window opens
    for listener in listeners:
        listener.min_seq = start_seq_box.value
    pipe.send("started")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop"
    for i in range(stalled):  # read what the stalled ones were sent, to see their close code
        transports[i].underlying_transport.resume_reading()
    if stalled:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                for i in range(stalled):
                    await transports[i].wait_disconnected()

    def close_code(i: int) -> int | None:
        if listeners[i].close_code is not None:
            return int(listeners[i].close_code)
        handshake = transports[i].close_handshake
        if handshake is not None and handshake.recv is not None:
            return int(handshake.recv.code)
        return None if not transports[i].is_disconnected else -1  # -1: dropped without a close frame

    result = [
        {
            "count": li.count,
            "disorder": li.disorder,
            "lat": li.lat.tobytes(),
            "close": close_code(i),
            "stalled": i < stalled,
        }
        for i, li in enumerate(listeners)
    ]
    for t in transports:
        t.disconnect()
    pipe.send(result)


# -- broker ----------------------------------------------------------------------------------


class Broker:
    def __init__(self) -> None:
        self.conns: list[ServerConnection] = []
        self.connected = asyncio.Event()
        self.seq = 0

    async def handler(self, conn: ServerConnection) -> None:
        self.conns.append(conn)
        self.connected.set()
        with contextlib.suppress(Exception):
            await conn.wait_closed()

    async def stream(self, rate: int, seconds: float) -> int:
        """Send at ``rate`` messages/s for ``seconds``; returns how many were sent."""
        conn = self.conns[-1]
        start = time.monotonic()
        sent = 0
        total = int(rate * seconds)
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                seq = self.seq
                self.seq += 1
                sym = SYMBOLS[seq % len(SYMBOLS)]
                values = (sym.encode(), time.time_ns() // 1000, seq)
                msg = b'{"symbol":"%s","time":%d,"candles":[%d,100.0,100.5,101.0,99.0]}' % values
                await conn.send(msg, text=True)
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
        return sent


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[tuple[Broker, int]]:
    b = Broker()
    async with serve(b.handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        yield b, next(iter(server.sockets)).getsockname()[1]


# -- relay process and /proc ---------------------------------------------------------------


def relay_cmd(relay: str, port: int, bport: int, port2: int = 0) -> list[str]:
    up = f"ws://127.0.0.1:{bport}/"
    if relay == "scale":
        scale = [sys.executable, "-m", "bench.relays.scale", "--port", str(port), "--port2", str(port2)]
        return [*scale, "--upstream", up]
    if relay == "candlecast":
        extra = os.environ.get("CANDLECAST_BENCH_ARGS", "").split()
        return [
            *(sys.executable, "-m", "candlecast", "--port", str(port)),
            *("--source", "ws", "--format", "seed", "--upstream", up),
            *("--log-level", "warning", "--max-clients", "10000", *extra),
        ]
    return [sys.executable, "-m", f"bench.relays.{relay}", "--port", str(port), "--upstream", up]


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` and its children, from /proc."""
    user = system = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) / TICK
        system += int(fields[12]) / TICK
    return user, system


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            for c in open(f"/proc/{pid}/task/{tid}/children").read().split():
                out += [int(c), *children(int(c))]
    except OSError:
        pass
    return out


def rss_bytes(pid: int) -> int:
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


async def wait_port(port: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        if proc.returncode is not None:
            raise RuntimeError(f"relay exited with {proc.returncode}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("relay did not start")


async def slow_disconnects(port: int) -> int | None:
    """candlecast's own count of clients closed with 1013, from /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    for line in body.splitlines():
        if line.startswith("candlecast_slow_disconnects_total "):
            return int(float(line.split()[1]))
    return None


# -- one run ---------------------------------------------------------------------------------


def pct(sorted_vals: list[int], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))] / 1000.0


async def run_one(relay: str, sc: Scenario, seconds: float, workers: int, profile: str | None = None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    async with broker() as (b, bport):
        port = free_port()
        port2 = free_port() if relay == "scale" else 0
        ports = [port, port2] if port2 else [port]
        cmd = relay_cmd(relay, port, bport, port2)
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for p in ports:
                await wait_port(p, proc)
            await asyncio.wait_for(b.connected.wait(), 30)
            rss0 = rss_bytes(proc.pid)
            query = "?batch=1" if sc.batch and relay in ("candlecast", "scale") else ""
            urls = [f"ws://127.0.0.1:{p}/ws{query}" for p in ports]  # scale: clients split over the edges
            n_workers = max(1, min(workers, sc.clients))
            ctx = mp.get_context("spawn")
            start_seq = ctx.Value("q", 0)
            pipes, procs = [], []
            per = [sc.clients // n_workers + (i < sc.clients % n_workers) for i in range(n_workers)]
            stalled_left = sc.stalled
            for i, n in enumerate(per):
                a, c = ctx.Pipe()
                st = min(stalled_left, n) if i == 0 else 0
                stalled_left -= st
                url = urls[i % len(urls)]
                w = ctx.Process(target=client_worker, args=(url, n, st, c, start_seq), daemon=True)
                w.start()
                pipes.append(a)
                procs.append(w)
            for a in pipes:
                assert await loop.run_in_executor(None, a.recv) == "ready"
            await b.stream(sc.rate, 1.0)  # warm-up: every subscription is live by now
            start_seq.value = b.seq
            for a in pipes:
                a.send("start")
            for a in pipes:
                assert await loop.run_in_executor(None, a.recv) == "started"
            rss_conn = rss_bytes(proc.pid)
            user0, sys0 = cpu_times(proc.pid)
            t0 = time.monotonic()
            peak = rss_conn
            sampler_stop = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not sampler_stop.is_set():
                    peak = max(peak, rss_bytes(proc.pid))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sampler_stop.wait(), 0.2)

            sampler = asyncio.create_task(sample())
            spy = None
            if profile:  # py-spy's collapsed stacks of the relay, for the measured window
                out = f"{profile}/{relay}-{sc.name.replace(' ', '_')}.txt"
                spy = await asyncio.create_subprocess_exec(
                    *(py_spy(), "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "250"),
                    *("--duration", str(int(seconds)), "--output", out, "--threads", "--gil"),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            sent = await b.stream(sc.rate, seconds)
            if spy is not None:
                await spy.wait()
            await asyncio.sleep(1.0)  # let the last deliveries land
            elapsed = time.monotonic() - t0
            user1, sys1 = cpu_times(proc.pid)
            cpu = user1 - user0 + sys1 - sys0
            sys_share = (sys1 - sys0) / cpu if cpu else 0.0
            rss_end = rss_bytes(proc.pid)
            sampler_stop.set()
            await sampler
            slow = None
            if relay in ("candlecast", "scale"):
                counts = [await slow_disconnects(p) for p in ports]
                slow = None if None in counts else sum(c for c in counts if c is not None)
            for a in pipes:
                a.send("stop")
            results: list[dict[str, Any]] = []
            for a in pipes:
                results += await loop.run_in_executor(None, a.recv)
            for w in procs:
                w.join(10)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    healthy = [r for r in results if not r["stalled"]]
    lat: list[int] = []
    for r in healthy:
        lat.extend(array("q", r["lat"]))
    lat.sort()
    delivered = sum(r["count"] for r in healthy)
    expected = sent * len(healthy)
    return {
        "relay": relay,
        "scenario": sc.name,
        "delivered_pct": 100.0 * delivered / expected if expected else 0.0,
        "deliveries_s": delivered / elapsed,
        "p50": pct(lat, 0.50),
        "p90": pct(lat, 0.90),
        "p99": pct(lat, 0.99),
        "max": pct(lat, 1.0),
        "cpu_per_1k": 1000.0 * cpu / delivered if delivered else float("nan"),
        "sys_share": sys_share,
        "cpu_per_1k_candles": 1000.0 * cpu / sent if sent else float("nan"),
        "peak_rss_mb": peak / 2**20,
        "rss_per_client_kb": max(0, rss_conn - rss0) / 1024 / sc.clients,
        "rss_end_mb": rss_end / 2**20,
        "rss_growth_mb": (rss_end - rss_conn) / 2**20,
        "disorder": sum(r["disorder"] for r in healthy),
        "slow_disconnects": slow,
        "stalled_close": sorted({r["close"] for r in results if r["stalled"]}, key=str),
    }


def slow_note(r: dict[str, Any]) -> str:
    return "" if r.get("slow_disconnects") is None else f" ({r['slow_disconnects']} slow)"


#: The results table's columns, as they head it ("|" between them, as two hold a space).
TABLE_HEAD = "scenario|relay|deliv%|deliv/s|p50ms|p90ms|p99ms|maxms|cpu s/1k|sys%|peakMB|KB/cli|ΔRSS MB|stalled"


def table(rows: list[dict[str, Any]]) -> str:
    head = TABLE_HEAD.split("|")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['relay']} | {r['delivered_pct']:.1f} | {r['deliveries_s']:.0f} | "
            f"{r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} | {r['max']:.1f} | {r['cpu_per_1k']:.4f} | "
            f"{100 * r['sys_share']:.0f} | {r['peak_rss_mb']:.0f} | {r['rss_per_client_kb']:.1f} | "
            f"{r['rss_growth_mb']:+.1f} | "
            f"{','.join(map(str, r['stalled_close'])) or '-'}{slow_note(r)} |"
        )
    return "\n".join(lines)


async def main() -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", help="scenario name (repeatable); default: all")
    p.add_argument("--relay", action="append", choices=RELAYS, help="relay (repeatable); default: all")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--quick", action="store_true", help="3 s per run")
    p.add_argument("--workers", type=int, default=2, help="client worker processes")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--profile", metavar="DIR", help="record each relay with py-spy (collapsed stacks) into DIR")
    a = p.parse_args()
    seconds = 3.0 if a.quick else a.seconds
    scenarios = [s for s in SCENARIOS if not a.scenario or s.name in a.scenario]
    relays = a.relay or DEFAULT_RELAYS
    rows = []
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"# {stamp} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {seconds:.0f} s per run",
        flush=True,
    )
    for sc in scenarios:
        for relay in relays:
            row = await run_one(relay, sc, sc.seconds or seconds, a.workers, a.profile)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    return rows


if __name__ == "__main__":
    out = asyncio.run(main())
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "wb") as f:
            f.write(orjson.dumps(out, option=orjson.OPT_INDENT_2))
