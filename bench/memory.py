"""Where a connection's bytes go: tracemalloc in a real candlecast, N idle clients.

    .venv/bin/python -m bench.memory --clients 500

Starts candlecast (simulator, 1 update/s) in a child process with tracemalloc on, takes a
snapshot, connects ``--clients`` WebSocket clients (picows, in this process), takes a second
snapshot once every client has its snapshot, and prints the difference per allocating line and
per file, divided by the number of clients. Loopback only; ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from typing import Any

from tests.support import free_port

CHILD = r"""
import os, signal, sys, tracemalloc, pickle
tracemalloc.start(int(os.environ.get("CANDLECAST_TRACE_DEPTH", "1")))
out = sys.argv[1]
def dump(*_):
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    n = int(open(out + ".n").read()) if os.path.exists(out + ".n") else 0
    snap.dump(f"{out}.{n}")
    open(out + ".n", "w").write(str(n + 1))
signal.signal(signal.SIGUSR1, dump)
from candlecast.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def main() -> None:
    import tracemalloc

    from picows import WSListener, ws_connect

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--depth", type=int, default=1, help="frames per allocation: >1 also prints whole tracebacks")
    p.add_argument("args", nargs="*", help="extra candlecast flags")
    ns = p.parse_args()
    port = free_port()
    tmp = tempfile.mkdtemp()
    out = os.path.join(tmp, "snap")
    flags = ["--port", str(port), "--rate", "1", "--log-level", "warning", "--max-clients", "100000", *ns.args]
    env = {**os.environ, "CANDLECAST_TRACE_DEPTH": str(ns.depth)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, out, *flags, env=env)
    for _ in range(200):  # bounded: until it listens
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)

    async def snapshot(k: int) -> Any:
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGUSR1)
        for _ in range(400):
            if _exists(f"{out}.{k}"):
                await asyncio.sleep(0.2)  # let the dump finish writing
                return tracemalloc.Snapshot.load(f"{out}.{k}")
            await asyncio.sleep(0.05)
        raise RuntimeError("no snapshot")

    before = await snapshot(0)
    got = 0
    ready = asyncio.Event()

    class Listener(WSListener):
        seen = False

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            nonlocal got
            if not self.seen:
                self.seen = True
                got += 1
                if got == ns.clients:
                    ready.set()

    conns = [await ws_connect(Listener, f"ws://127.0.0.1:{port}/ws") for _ in range(ns.clients)]
    await asyncio.wait_for(ready.wait(), 60)
    after = await snapshot(1)
    per = ns.clients
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"{ns.clients} clients: {total / per / 1024:.1f} KiB of Python heap per client (tracemalloc)")
    by_file: dict[str, int] = {}
    for s in stats:
        name = s.traceback[0].filename
        for marker in ("site-packages/", "python3.11/", "service/"):
            if marker in name:
                name = name.split(marker, 1)[1]
        by_file[name] = by_file.get(name, 0) + s.size_diff
    print("\n| file | bytes per client |\n|---|---|")
    for name, size in sorted(by_file.items(), key=lambda kv: -kv[1])[: ns.top]:
        print(f"| {name} | {size / per:.0f} |")
    print("\n| line | bytes per client |\n|---|---|")
    for s in stats[: ns.top]:
        f = s.traceback[0]
        print(f"| {f.filename.split('/')[-1]}:{f.lineno} | {s.size_diff / per:.0f} |")
    if ns.depth > 1:
        for s in after.compare_to(before, "traceback")[: ns.top]:
            print(f"\n{s.size_diff / per:.0f} bytes per client:")
            for frame in reversed(s.traceback):  # innermost first
                print(f"    {frame.filename.split('/')[-1]}:{frame.lineno}")
    for transport, _ in conns:
        transport.disconnect()
    proc.send_signal(signal.SIGTERM)
    await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
