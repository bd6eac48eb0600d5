"""``python -m service`` and the ``candlecast`` command.

``candlecast [flags]`` runs the server; ``candlecast record --upstream URL --format F --out FILE``
records an upstream to JSONL for ``--source replay``. See ``candlecast --help``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from . import settings as settings_mod
from .candles import FORMATS
from .settings import SettingsError

SWITCH_INTERVAL = 0.0005
GC_THRESHOLDS = (2000, 20, 100)  # CPython's defaults: (700, 10, 10); see tune_gc()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["record"]:
        return record_main(args[1:])
    try:
        settings = settings_mod.from_argv(args, os.environ)
    except SettingsError as exc:
        print(f"candlecast: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The producer thread and the event loop share the GIL: at the default 5 ms switch interval
    # a candle can wait that long for the loop to be scheduled. 0.5 ms trades a little
    # switching overhead for much lower delivery latency (see bench/README.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    from .app import create_app
    from .server import Server, config

    app = create_app(settings)
    server = Server(config(app, settings))
    tune_gc()
    server.run()
    return 0 if server.started else 1


def tune_gc() -> None:
    """Keep full garbage collections rare: with 1000 clients a gen-2 pass walks every
    connection's objects and stalls the loop for 80-190 ms (measured), several times a minute
    under load, which was all of the 1000x20 p99. Freezing what start-up allocated takes it out
    of every pass, and a full pass now needs 100 (not 10) gen-1 passes: p99 125 -> 31 ms. The
    hot path allocates no reference cycles, so little garbage waits for the cycle collector."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def record_main(argv: Sequence[str]) -> int:
    """Record an upstream WebSocket to JSONL, one ``{"at", "msg"}`` record per message."""
    parser = argparse.ArgumentParser(prog="candlecast record", description=record_main.__doc__)
    parser.add_argument("--upstream", required=True, help="broker WebSocket URL")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="upstream format")
    parser.add_argument("--out", required=True, help="output JSONL file")
    parser.add_argument("--subscribe", help="JSON message sent after connecting")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages (0: never)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: never)")
    ns = parser.parse_args(list(argv))
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from .candles import MalformedMessage, parse
    from .sources.replay import record_line

    fmt = FORMATS[ns.format]
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + ns.duration if ns.duration > 0 else None
    written = candles = malformed = 0
    try:
        with connect(ns.upstream, compression=None, proxy=None, close_timeout=1) as conn, open(ns.out, "wb") as out:
            if ns.subscribe:
                conn.send(ns.subscribe)
            while not stop.is_set():
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                try:
                    raw = conn.recv(timeout=min(timeout, 1.0) if timeout is not None else 1.0)
                except TimeoutError:
                    continue
                out.write(record_line(time.time(), raw))
                written += 1
                try:
                    candles += parse(fmt, raw) is not None
                except MalformedMessage:
                    malformed += 1
                if ns.count and written >= ns.count:
                    break
    except ConnectionClosed as exc:
        print(f"candlecast record: upstream closed ({exc})", file=sys.stderr)
    except OSError as exc:
        print(f"candlecast record: cannot connect to {ns.upstream}: {exc}", file=sys.stderr)
        return 1
    print(f"candlecast record: {written} messages ({candles} candles, {malformed} malformed) -> {ns.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
