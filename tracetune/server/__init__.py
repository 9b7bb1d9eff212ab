"""The HTTP server: one FastAPI app serving every surface.

``app`` (``create_app``: the composition root), ``deps`` (what routes depend on: ``state``, ``workspace``,
``read_body``), ``errors`` (the error shape of each surface), ``inprocess`` (``InProcessServer``: the app on a
loopback port in a thread) and one package per surface: ``langsmith`` (``/api/v1``), ``openai`` (``/v1``), ``tt``
(``/tt/v1``) and ``ui`` (``/``)."""
