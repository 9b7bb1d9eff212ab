"""``tracetune demo``: an app traced, its good runs picked, a model fine-tuned on them and shown to beat the base."""
