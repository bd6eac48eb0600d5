"""The installed distribution's version (``pyproject.toml`` is the one place it is written)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("candlecast")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
