"""Reference relays the benchmark runs beside candlecast."""
