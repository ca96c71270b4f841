"""Vendor sources (domain layer: imports only db and core).

- ``base``: :class:`~sources.base.BaseSource`, the seed's plugin API and the protocol the
  collection asks (first requests, page parser);
- ``registry``: sources by name (built-ins, ``marketpipe.sources`` entry points, settings
  plugins); ``factory``: one source wired from settings;
- one package per vendor (``polygon``, ``alpaca``, ``yahoo``, ``reddit``), each with ``parsing``
  (pure payload -> frame functions), ``client`` (requests and paging over the transport it is
  given) and ``source`` (the BaseSource wiring them); ``vendor``: what their sources share;
- the seams every vendor shares: ``http`` (the one transport), ``resilience`` (rate limits,
  retries, circuit breakers), ``dead_letters``; ``records``: pages of plugin frames.
"""
