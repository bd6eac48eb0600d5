"""candlecast: one upstream market-data feed in, many live dashboards out."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("candlecast")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
