"""The store: one database (SQLite by default, PostgreSQL for scale) behind small repositories.

Public: ``Store`` (the repositories of one database), ``open_store``, ``open_store_from_settings``. Modules: ``schema``
(the tables, SQLAlchemy Core), ``engine`` (``Database``: opening, pragmas, migrations, retries), ``rows`` (the
TypedDict of each table's rows), ``sqlutil`` and ``jsonvalues`` (dialect helpers), ``packing`` and ``dictionaries`` (a
run's ``extra``, ``serialized`` and ``events`` zstd-compressed with a dictionary trained on the store's own values),
one repository per table family: ``workspaces``, ``projects``, ``runs`` (owns ``RUN_COLUMNS``), ``feedback``,
``feedback_tokens``, ``feedback_configs``, ``annotation_queues``, ``datasets``, ``examples``, ``files``, ``jobs``,
``models``, ``aliases``, ``automations``; and ``blobs`` (``Blobs``: the bytes beside the database — uploaded files,
attachments, adapters, checkpoints — in the data home, shared through an fsspec object store when
``TRACETUNE_BLOB_URL`` is set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tracetune.store.engine import Database, create_store_engine, upgrade_to_head

if TYPE_CHECKING:
    from tracetune.config import Settings
    from tracetune.store.aliases import AliasStore
    from tracetune.store.annotation_queues import AnnotationQueueStore
    from tracetune.store.automations import AutomationStore
    from tracetune.store.datasets import DatasetStore
    from tracetune.store.examples import ExampleStore
    from tracetune.store.feedback import FeedbackStore
    from tracetune.store.feedback_configs import FeedbackConfigStore
    from tracetune.store.feedback_tokens import FeedbackTokenStore
    from tracetune.store.files import FileStore
    from tracetune.store.jobs import JobStore
    from tracetune.store.models import FineTunedModelStore
    from tracetune.store.projects import ProjectStore
    from tracetune.store.runs import RunStore
    from tracetune.store.workspaces import WorkspaceStore


@dataclass
class Store:
    db: Database
    workspaces: WorkspaceStore = field(init=False)
    projects: ProjectStore = field(init=False)
    runs: RunStore = field(init=False)
    feedback: FeedbackStore = field(init=False)
    feedback_tokens: FeedbackTokenStore = field(init=False)
    feedback_configs: FeedbackConfigStore = field(init=False)
    annotation_queues: AnnotationQueueStore = field(init=False)
    datasets: DatasetStore = field(init=False)
    examples: ExampleStore = field(init=False)
    files: FileStore = field(init=False)
    jobs: JobStore = field(init=False)
    models: FineTunedModelStore = field(init=False)
    aliases: AliasStore = field(init=False)
    automations: AutomationStore = field(init=False)

    def __post_init__(self) -> None:
        from tracetune.store.aliases import AliasStore
        from tracetune.store.annotation_queues import AnnotationQueueStore
        from tracetune.store.automations import AutomationStore
        from tracetune.store.datasets import DatasetStore
        from tracetune.store.examples import ExampleStore
        from tracetune.store.feedback import FeedbackStore
        from tracetune.store.feedback_configs import FeedbackConfigStore
        from tracetune.store.feedback_tokens import FeedbackTokenStore
        from tracetune.store.files import FileStore
        from tracetune.store.jobs import JobStore
        from tracetune.store.models import FineTunedModelStore
        from tracetune.store.projects import ProjectStore
        from tracetune.store.runs import RunStore
        from tracetune.store.workspaces import WorkspaceStore

        self.workspaces = WorkspaceStore(self.db)
        self.projects = ProjectStore(self.db)
        self.runs = RunStore(self.db, self.projects)
        self.feedback = FeedbackStore(self.db)
        self.feedback_tokens = FeedbackTokenStore(self.db)
        self.feedback_configs = FeedbackConfigStore(self.db)
        self.annotation_queues = AnnotationQueueStore(self.db)
        self.datasets = DatasetStore(self.db)
        self.examples = ExampleStore(self.db)
        self.files = FileStore(self.db)
        self.jobs = JobStore(self.db)
        self.models = FineTunedModelStore(self.db)
        self.aliases = AliasStore(self.db)
        self.automations = AutomationStore(self.db)

    def close(self) -> None:
        self.db.engine.dispose()


def open_store(url: str, *, sqlite_synchronous: str = "FULL") -> Store:
    """Open (and upgrade to the newest schema) the database at ``url``."""
    engine = create_store_engine(url, sqlite_synchronous=sqlite_synchronous)
    upgrade_to_head(engine)
    return Store(Database(engine))


def open_store_from_settings(settings: Settings) -> Store:
    """The store of ``settings``; a blob store setting that cannot be opened is refused first (``InvalidInput``)."""
    from tracetune.store.blobs import blobs_from_settings

    settings.home.mkdir(parents=True, exist_ok=True)
    blobs_from_settings(settings)
    return open_store(settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous)
