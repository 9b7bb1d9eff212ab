"""The command line (``tracetune``): ``app`` (the Typer app) and ``main`` (the console script)."""

from tracetune.cli.app import app, main

__all__ = ["app", "main"]
