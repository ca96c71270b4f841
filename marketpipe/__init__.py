"""marketpipe: the market-data pipeline of an algorithmic-trading system."""

__version__ = "0.1.0"
