"""The ground: settings, errors, logging, the canonical data model and the market calendar.

Imports nothing of marketpipe's other packages; every other package may import it.
"""
