"""``tracetune demo``: an app traced, its good runs picked, a model fine-tuned on them and shown to beat the base.

``app`` (the traced LangChain accounting assistant), ``questions`` (the arithmetic it is asked), ``pipeline``
(``run_demo``: the whole loop) and ``report`` (the results table, markdown report and chart)."""
