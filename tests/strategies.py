"""Shared hypothesis strategies: JSON values with the awkward ones (huge and non-finite numbers,
nesting, unicode), objects with the keys the parsers look for, and one settings profile."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: The profile of every property test: enough examples to find the odd input, no deadline.
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
keys = st.sampled_from(["op", "symbols", "id", "token", "symbol", "time", "candles", "stream", "data", "k", "e"])
objects = st.dictionaries(keys | st.text(max_size=8), json_values, max_size=8)


def dumps(value: Any) -> bytes:
    """``value`` as JSON bytes; integers beyond 64 bits (which orjson refuses) as their text."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return str(value).encode()
