"""The per-address connection count."""

from __future__ import annotations

from candlecast.access.limits import PerAddress


def test_per_address_caps_open_connections_and_frees_slots() -> None:
    """At most ``limit`` slots per address; a slot comes back when its block ends."""
    cap = PerAddress(2)
    with cap.admit("a") as one, cap.admit("a") as two, cap.admit("a") as three, cap.admit("b") as other:
        assert (one, two, three, other) == (True, True, False, True)
        assert cap.count("a") == 2
    assert cap.count("a") == 0
    with PerAddress(0).admit("a") as unlimited:
        assert unlimited
