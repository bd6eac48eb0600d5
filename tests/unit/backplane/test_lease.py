"""Lease fencing tokens."""

from __future__ import annotations

from candlecast.backplane.lease import holder


def test_a_fencing_token_names_its_instance_so_tokens_differ_after_a_counter_reset() -> None:
    """Counter + instance: "1:a" and "1:b" differ although Redis's counter restarted at 1."""
    assert holder("12:abc") == "abc"
    assert holder("1:a") != holder("1:b")
