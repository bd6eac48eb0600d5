"""Shared test helpers: timeouts, system-binary requirements.

Every wait in the suite is an awaited event under a deadline scaled from :data:`MS`; nothing
sleeps to synchronize.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: One "unit" of waiting, in seconds; every deadline is a multiple of it.
MS = float(os.environ.get("CANDLECAST_TEST_MS", "0.001"))
#: A generous deadline for things that should happen at once.
DEADLINE = 10_000 * MS

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, *, env: str | None = None, default: str | None = None) -> str:
    """The path of a system binary a test needs: skip locally when missing, fail in CI."""
    path = os.environ.get(env, default) if env else None
    found = path if path and os.path.exists(path) else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (apt-get install {name}); this test needs the real binary"
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)


def require_chart_library() -> None:
    """The dashboard's chart module (the build hook puts it in the package): skip locally, fail in CI."""
    from candlecast.settings import DEFAULT_CHART_JS

    if DEFAULT_CHART_JS.is_file():
        return
    message = f"the chart library is not built ({DEFAULT_CHART_JS}); run scripts/bootstrap (needs npm)"
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(message)
