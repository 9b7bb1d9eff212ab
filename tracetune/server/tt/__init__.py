"""tracetune's own API (``/tt/v1``): ``protocol`` (strict shapes, unknown fields refused), ``routes`` (datasets),
``aliases`` and ``automations``."""
