"""The web UI at ``/`` (server-rendered Jinja2 + vendored htmx): ``pages`` (shared rendering and login), one
module per page family (``runs``, ``queues``, ``datasets`` and ``dataset_records`` (edit, delete, compare),
``jobs``, ``models``,
``playground``, ``automations``), pure ``views``/``actions`` helpers,
``templates/`` and ``static/``; ``mount.mount_ui`` puts it on the app."""
