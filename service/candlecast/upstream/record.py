"""``candlecast record``: an upstream WebSocket recorded to JSONL, for ``--source replay``.

Runs in the calling (main) thread with ``websockets``' sync client, until a count, a duration or
SIGINT/SIGTERM; closes the connection and the file on the way out. :func:`record_line` is the
one record format that :mod:`candlecast.upstream.replay` reads back.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ..formats.registry import BUILTIN, FormatError, resolve
from ..model.candle import MalformedMessage, parse

__all__ = ["main", "record_line"]


def record_line(at: float, raw: str | bytes) -> bytes:
    """One JSONL record for ``raw``; a message that is not JSON is kept as a string."""
    try:
        msg: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        msg = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    return orjson.dumps({"at": at, "msg": msg}) + b"\n"


def main(argv: Sequence[str]) -> int:
    """Record an upstream WebSocket to JSONL, one ``{"at", "msg"}`` record per message."""
    parser = argparse.ArgumentParser(prog="candlecast record", description=main.__doc__)
    parser.add_argument("--upstream", required=True, help="broker WebSocket URL")
    parser.add_argument(
        "--format",
        required=True,
        help=f"upstream format: {', '.join(BUILTIN)}, a plug-in's name, or package.module:function",
    )
    parser.add_argument("--out", required=True, help="output JSONL file")
    parser.add_argument("--subscribe", help="JSON message sent after connecting")
    parser.add_argument("--count", type=int, default=0, help="stop after N messages (0: never)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: never)")
    ns = parser.parse_args(list(argv))
    try:
        fmt = resolve(ns.format)
    except FormatError as exc:
        print(f"candlecast record: {exc}", file=sys.stderr)
        return 2
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
                    candles += len(parse(fmt, raw))
                except MalformedMessage:
                    malformed += 1
                except Exception:  # a plug-in's bug only miscounts the summary; the record is raw
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
