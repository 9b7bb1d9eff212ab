"""The command line (``tracetune``): ``app`` (the Typer app, ``main`` the console script), ``_common``
(``HomeOpt``, ``DbOpt``, ``open_store_for``, ``in_workspace``, ``fail``) and one module per command group:
``serve``, ``keys``, ``runs``, ``db``, ``demo``, ``eval``, ``export`` (``export``, ``validate``), ``jobs``
(``train``, ``worker``, ``jobs …``, ``models …``), ``aliases``, ``automations``, ``teacher``.
Public: ``app``, ``main``."""

from tracetune.cli.app import app, main

__all__ = ["app", "main"]
