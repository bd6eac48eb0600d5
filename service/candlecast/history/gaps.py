"""Where a reconnect left a hole in the live stream: :class:`GapWatch` notes, per symbol, the
first live bar and the last bar of each upstream connection, and on the first bar of a new
connection reports the :class:`Gap` between the last bar before the drop and it.

Pure apart from its own dicts; runs in the producer thread (it sees every base bar as the source
emits it), and its :attr:`GapWatch.first_live` is read by the loop only after the backfill is
fetched (a plain dict: reads of a key written once are safe under the GIL).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.candle import Candle

__all__ = ["Gap", "GapWatch"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Bars of ``symbol`` opening in ``[since, until)`` are missing (a reconnect)."""

    symbol: str
    since: int | float
    until: int | float


class GapWatch:
    """Follows the base bars as they arrive, with the connection each came on."""

    __slots__ = ("_last", "first_live")

    def __init__(self) -> None:
        #: Per symbol, the open time of the first live bar (the backfill stops before it).
        self.first_live: dict[str, int | float] = {}
        self._last: dict[str, tuple[int | float, int]] = {}

    def see(self, candle: Candle, connection: int) -> Gap | None:
        """Note ``candle`` (a base bar) from upstream connection number ``connection``; the gap
        a new connection's first bar reveals, if any."""
        s, ot = candle.s, candle.ot
        prev = self._last.get(s)
        self._last[s] = (ot, connection)
        if prev is None:
            self.first_live[s] = ot
            return None
        if prev[1] != connection and ot > prev[0]:
            return Gap(s, prev[0], ot)
        return None
