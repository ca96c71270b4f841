"""Pure renderers of the vendors' wire formats: market answers in, JSON-ready dicts out."""
