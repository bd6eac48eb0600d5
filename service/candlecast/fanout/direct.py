"""The direct path's pump step: the frames each caught-up client gets in this step, written in
one transport write per client at the end of the step, with no task wake-up.

A client is caught up when it has a direct path (its connection offers one: see
:mod:`candlecast.server.protocols`), nothing queued and no writer running, and its connection is
:meth:`~candlecast.fanout.items.DirectWrite.ready`. Its frames then collect in
:attr:`~candlecast.fanout.subscriber.Subscriber.out` during the step (:func:`take`), and
:func:`flush` writes them. Anything else goes through the client's queue, so queued frames are
always in the transport before any direct write. Event loop only; owns nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from .items import Update
from .subscriber import Subscriber, SubscriptionState

__all__ = ["flush", "take"]


def take(sub: Subscriber, update: Update, dirty: list[Subscriber]) -> bool:
    """Give ``update`` to ``sub`` on the direct path in this step, if it is caught up (``dirty``
    collects the step's direct clients); False: the caller queues it instead."""
    out = sub.out
    if out is not None:  # on the direct path in this step already
        out.append(update.frame)
        sub.out_received = update.received
        return True
    direct = sub.direct
    if direct is not None and not sub.busy and direct.ready():
        sub.out = [update.frame]
        sub.out_received = update.received
        dirty.append(sub)
        return True
    return False


def flush(dirty: list[Subscriber], now: float, observe: Callable[[float], None]) -> int:
    """Write each of the step's direct clients its frames in one write (latency observed from
    the newest one's receipt); empties ``dirty``; returns how many frames were written."""
    written = 0
    ended = SubscriptionState.ENDED
    for sub in dirty:
        out = sub.out
        sub.out = None
        direct = sub.direct
        if out is None or direct is None or sub.state is ended:
            continue
        direct.write(out[0] if len(out) == 1 else b"".join(out))
        observe(now - sub.out_received)
        written += len(out)
    dirty.clear()
    return written
