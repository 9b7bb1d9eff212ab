"""``tracetune demo``: an app traced, its good runs picked, a model fine-tuned on them and shown to beat the base.

``app`` (the traced LangChain accounting assistant), ``questions`` (the arithmetic it is asked), ``tickets`` (a
second task, support tickets routed by team and priority: a decision, not a copy), ``pipeline`` (``run_demo``: the
whole loop), ``loop`` (``run_loop_demo``: the closed loop, an automation promoting an alias over two batches of
traffic) and ``report`` (the results table, markdown report and chart)."""
