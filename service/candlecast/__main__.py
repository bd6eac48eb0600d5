"""``python -m candlecast`` and the ``candlecast`` command.

``candlecast [flags]`` runs the server; ``candlecast record --upstream URL --format F --out FILE``
records an upstream to JSONL for ``--source replay``. See ``candlecast --help``.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Sequence

from . import settings as settings_mod
from .settings import SettingsError

__all__ = ["main"]

SWITCH_INTERVAL = 0.0005
GC_THRESHOLDS = (2000, 20, 100)  # CPython's defaults: (700, 10, 10); see tune_gc()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["record"]:
        from .upstream import record

        return record.main(args[1:])
    try:
        settings = settings_mod.from_argv(args, os.environ)
        derived = settings_mod.derive(settings)  # the start-up check: imports a plug-in format, or one line why not
    except SettingsError as exc:
        print(f"candlecast: {exc}", file=sys.stderr)
        return 2
    from .server.runner import Server, UnsupportedUvicorn, check_uvicorn, config

    try:
        check_uvicorn()
    except UnsupportedUvicorn as exc:
        print(f"candlecast: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The producer thread and the event loop share the GIL: at the default 5 ms switch interval
    # a candle can wait that long for the loop to be scheduled. 0.5 ms trades a little
    # switching overhead for much lower delivery latency (see bench/README.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    from .web.app import Service

    service = Service(settings, derived=derived)
    server = Server(config(service.asgi, settings, guard=service.guard), drain=service.drain)
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


if __name__ == "__main__":
    raise SystemExit(main())
