"""candlecast: one upstream market-data feed in, many live dashboards out."""

__version__ = "0.1.0"
