"""Vendor sources: the plugin API (base), the canonical model, one module per vendor, and the
resilience (rate limits, retries, circuit breakers) and dead-letter queue they share."""
