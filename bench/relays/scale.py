"""candlecast scaled out through Redis, as one relay for the benchmark: a redis-server (no
persistence), one ingest reading the broker, and two edges on ``--port`` and ``--port2``. The
benchmark splits its clients over the two edges and sums CPU and memory over this process's
tree, Redis included.

    python -m bench.relays.scale --port P --port2 Q --upstream ws://127.0.0.1:B/

Runs until SIGTERM/SIGINT, then stops its children (SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading

from tests.support import free_port


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--port2", type=int, required=True)
    p.add_argument("--upstream", required=True)
    a = p.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not installed")
    rport = free_port()
    url = f"redis://127.0.0.1:{rport}/0"

    def start(cmd: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    extra = os.environ.get("CANDLECAST_BENCH_ARGS", "").split()
    common = [sys.executable, "-m", "candlecast", "--redis-url", url, "--log-level", "warning", *extra]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    redis = [redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs = [start(redis)]
    try:
        ingest = ["--role", "ingest", "--port", str(free_port()), "--source", "ws", "--format", "seed"]
        procs.append(start([*common, *ingest, "--upstream", a.upstream]))
        for port in (a.port, a.port2):
            edge = ["--role", "edge", "--port", str(port), "--max-clients", "5000"]
            procs.append(start([*common, *edge]))
        stop.wait()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
