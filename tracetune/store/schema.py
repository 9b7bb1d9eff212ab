"""The store's schema, in SQLAlchemy Core, shared by SQLite and PostgreSQL.

Conventions:
- times of runs are integer microseconds since the Unix epoch (``*_us``): exact, portable, and
  ``latency = end_us - start_us`` is plain arithmetic in both dialects;
- every row of user data carries ``workspace_id``; every query filters on it;
- ``run_tags`` and ``run_metadata`` are side tables so that ``has(tags, …)`` and ``has(metadata, …)``
  compile to indexed ``EXISTS`` sub-queries on both dialects (no JSON operators needed);
- a run's ``extra``, ``serialized`` and ``events`` are zstd-compressed JSON (``store.packing``);
- metadata values are stored as canonical JSON text (``json.dumps(v, sort_keys=True)``) so equality is exact.

Changing this file means adding a numbered Alembic migration under ``store/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    literal_column,
    text,
)

from tracetune.store.packing import PackedJSON

# SQL NULL for Python None (not the JSON literal ``null``): COALESCE-based upserts rely on it.
JSONValue = JSON(none_as_null=True)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Facts about the whole store, by name: ``auth_mode`` ("keyed" once a key was ever created, until an operator runs
# ``tracetune keys open``; see ``WorkspaceStore``).
store_flags = Table(
    "store_flags",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(500), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(200), nullable=True),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("description", Text, nullable=True),
    Column("extra", JSONValue, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("end_time", DateTime(timezone=True), nullable=True),  # migration 0006: set by update_project
    # migration 0010: an experiment is a project run over a dataset (LangSmith's reference_dataset_id)
    Column("reference_dataset_id", Uuid, ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True),
    UniqueConstraint("workspace_id", "name"),
)

runs = Table(
    "runs",
    metadata,
    Column("workspace_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("project_id", Uuid, nullable=True),
    Column("trace_id", Uuid, nullable=True),
    Column("parent_run_id", Uuid, nullable=True),
    Column("dotted_order", String(2000), nullable=True),
    Column("name", String(500), nullable=True),
    Column("run_type", String(32), nullable=True),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=True),
    Column("first_token_us", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("inputs", JSONValue, nullable=True),
    Column("outputs", JSONValue, nullable=True),
    # read back whole, never searched in SQL: compressed (``store.packing``)
    Column("extra", PackedJSON, nullable=True),
    Column("serialized", PackedJSON, nullable=True),
    Column("events", PackedJSON, nullable=True),
    Column("tags", JSONValue, nullable=True),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("total_tokens", Integer, nullable=True),
    Column("thread_id", String(500), nullable=True),
    Column("reference_example_id", Uuid, nullable=True),
    PrimaryKeyConstraint("workspace_id", "id"),
    Index("ix_runs_project_start", "workspace_id", "project_id", "start_us", "id"),
    Index("ix_runs_trace", "workspace_id", "trace_id"),
    Index("ix_runs_parent", "workspace_id", "parent_run_id"),
    # Runs posted without a dotted order wait here for their parent's (``RunStore`` derives it): a small index.
    Index(
        "ix_runs_awaiting_parent",
        "workspace_id",
        "parent_run_id",
        sqlite_where=text("dotted_order IS NULL"),
        postgresql_where=text("dotted_order IS NULL"),
    ),
)

# The keys the UI's runs table sorts by besides the start time (``query.runs_query.SORT_KEYS``), each with an index
# so that the first page of a big project is read in order instead of sorted: a run still running (no end) sorts
# as latency -1, a run without usage as -1 tokens. The literal -1 (not a bound parameter) lets the databases match
# the ORDER BY to the index expression.
RUN_LATENCY_US = func.coalesce(runs.c.end_us - runs.c.start_us, literal_column("-1"))
RUN_TOTAL_TOKENS = func.coalesce(runs.c.total_tokens, literal_column("-1"))
Index("ix_runs_project_latency", runs.c.workspace_id, runs.c.project_id, RUN_LATENCY_US, runs.c.id)
Index("ix_runs_project_tokens", runs.c.workspace_id, runs.c.project_id, RUN_TOTAL_TOKENS, runs.c.id)

# The zstd dictionaries of the packed columns (``store.packing``): immutable, never deleted; id = the dictionary's id.
json_dictionaries = Table(
    "json_dictionaries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("workspace_id", Uuid, nullable=False),
    Column("run_id", Uuid, nullable=False),
    Column("tag", String(500), nullable=False),
    PrimaryKeyConstraint("workspace_id", "run_id", "tag"),
    Index("ix_run_tags_tag", "workspace_id", "tag"),
)

run_metadata = Table(
    "run_metadata",
    metadata,
    Column("workspace_id", Uuid, nullable=False),
    Column("run_id", Uuid, nullable=False),
    Column("key", String(500), nullable=False),
    Column("value", Text, nullable=True),
    PrimaryKeyConstraint("workspace_id", "run_id", "key"),
    Index("ix_run_metadata_key", "workspace_id", "key"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, nullable=False),
    Column("run_id", Uuid, nullable=True),
    Column("trace_id", Uuid, nullable=True),
    Column("session_id", Uuid, nullable=True),
    Column("key", String(500), nullable=False),
    Column("score", Float, nullable=True),
    Column("value", JSONValue, nullable=True),
    Column("comment", Text, nullable=True),
    Column("correction", JSONValue, nullable=True),
    Column("feedback_source", JSONValue, nullable=True),
    Column("extra", JSONValue, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
    Index("ix_feedback_run", "workspace_id", "run_id", "key"),
    Index("ix_feedback_key", "workspace_id", "key"),
)

# Pre-signed feedback URLs (migration 0007): the token id is the credential, scoped to one run and key, expiring.
feedback_tokens = Table(
    "feedback_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("run_id", Uuid, nullable=False),
    Column("feedback_key", String(500), nullable=False),
    Column("feedback_config", JSONValue, nullable=True),
    Column(
        "feedback_id", Uuid, nullable=True
    ),  # the feedback each use writes (the same one), when the creator named it
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_feedback_tokens_run", "workspace_id", "run_id"),
)

# How a feedback key's scores read (migration 0008): one configuration per key and workspace.
feedback_configs = Table(
    "feedback_configs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("feedback_key", String(500), nullable=False),
    Column("feedback_config", JSONValue, nullable=False),
    Column("is_lower_score_better", Boolean, nullable=True),
    Column("modified_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "feedback_key"),
)

# Annotation queues (migration 0009): runs (or threads) waiting for a person's review; a single reviewer per
# workspace, so an item is either waiting ("needs my review") or completed ("archived").
annotation_queues = Table(
    "annotation_queues",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("description", Text, nullable=True),
    Column("rubric_instructions", Text, nullable=True),
    Column("rubric_items", JSONValue, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

annotation_queue_items = Table(
    "annotation_queue_items",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("queue_id", Uuid, ForeignKey("annotation_queues.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", Uuid, nullable=False),
    Column("item_type", String(16), nullable=False),  # RUN | THREAD
    Column("run_id", Uuid, nullable=True),
    Column("project_id", Uuid, nullable=True),
    Column("thread_id", String(500), nullable=True),
    Column("start_time", DateTime(timezone=True), nullable=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("last_reviewed_time", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Index("ix_annotation_queue_items_queue", "queue_id", "completed_at", "added_at"),
    Index("ix_annotation_queue_items_run", "workspace_id", "run_id"),
)

# -- datasets (migrations 0002, 0010) -------------------------------------------------------------------------
# A dataset is a named, versioned set of examples: what LangSmith's dataset API and tracetune's exports both
# write. Every write (an export, an SDK call adding/changing/deleting examples) makes the next version. An
# example row is one state of an example, valid from the version that wrote it until the version that changed or
# deleted it (``valid_to``, exclusive; NULL while current), so any version is read back as it was. A tracetune
# export replaces the whole set and records its selection, options and summary on its version.

datasets = Table(
    "datasets",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("data_type", String(16), nullable=False),  # kv | llm | chat
    Column("metadata", JSONValue, nullable=True),
    Column("inputs_schema", JSONValue, nullable=True),
    Column("outputs_schema", JSONValue, nullable=True),
    Column("transformations", JSONValue, nullable=True),
    Column("version", Integer, nullable=False),  # the newest version (0: created, nothing written yet)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Uuid, primary_key=True),  # what /tt/v1/datasets, the UI and a job's metadata call a dataset id
    Column("dataset_id", Uuid, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", Uuid, nullable=False),
    Column("version", Integer, nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),  # LangSmith's name for a version
    Column("tags", JSONValue, nullable=False),  # list of tag names (update_dataset_tag moves a tag here)
    Column("source", String(16), nullable=False),  # export | api
    Column("selection", JSONValue, nullable=True),  # export versions: the run selection
    Column("options", JSONValue, nullable=True),  # export versions: the export options
    Column("summary", JSONValue, nullable=True),  # export versions: what the export kept and skipped
    Column("record_count", Integer, nullable=False),
    Column("train_count", Integer, nullable=False),
    Column("validation_count", Integer, nullable=False),
    UniqueConstraint("dataset_id", "version"),
)

examples = Table(
    "examples",
    metadata,
    Column("row_id", Integer, primary_key=True, autoincrement=True),
    Column("id", Uuid, nullable=False),  # the example id: one per example, shared by its rows (states)
    Column("dataset_id", Uuid, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", Uuid, nullable=False),
    Column("line", Integer, nullable=False),  # position in the dataset (kept when the example changes)
    Column("inputs", JSONValue, nullable=True),
    Column("outputs", JSONValue, nullable=True),
    Column("metadata", JSONValue, nullable=True),
    Column("splits", JSONValue, nullable=False),  # list of split names
    Column("source_run_id", Uuid, nullable=True),
    Column("run_ids", JSONValue, nullable=True),  # lineage: the LLM run(s) an exported record came from
    Column("trace_id", Uuid, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
    Column("valid_from", Integer, nullable=False),
    Column("valid_to", Integer, nullable=True),
    Index("ix_examples_current", "dataset_id", "valid_to", "line"),
    Index("ix_examples_id", "id", "valid_from"),
)

comparative_experiments = Table(  # two or more experiments over one dataset, compared (evaluate((a, b), …))
    "comparative_experiments",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid, nullable=False),
    Column("name", String(500), nullable=True),
    Column("description", Text, nullable=True),
    Column("reference_dataset_id", Uuid, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("experiment_ids", JSONValue, nullable=False),  # the compared projects' ids (strings), in order
    Column("extra", JSONValue, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("modified_at", DateTime(timezone=True), nullable=False),
)

# -- files (migration 0003) ----------------------------------------------------------------------------------
# Files uploaded through the OpenAI-compatible ``/v1/files``. The bytes live on disk under
# ``$TRACETUNE_HOME/files/`` at ``blob_path`` (``<workspace id>/<file id>``); the row is the index. Times are
# integer Unix seconds, as OpenAI reports them.

files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),  # file-<24 hex>
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("filename", String(500), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_details", Text, nullable=True),
    Column("blob_path", String(200), nullable=False),
    Index("ix_files_workspace_created", "workspace_id", "created_at", "id"),
)

# -- fine-tuning (migration 0004) ----------------------------------------------------------------------------
# Jobs of the OpenAI-compatible ``/v1/fine_tuning/jobs``, their events and checkpoints, and the fine-tuned models
# they produce. Times are integer Unix seconds (OpenAI's), except the runner's ``heartbeat_at`` (float seconds).
# A job's files (config, log, checkpoints, adapter) live under ``$TRACETUNE_HOME/jobs/<job id>/``; paths stored
# here are relative to the home so that several machines sharing it (a network mount) agree on them.

fine_tuning_jobs = Table(
    "fine_tuning_jobs",
    metadata,
    Column("id", String(64), primary_key=True),  # ftjob-<24 hex>
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("model", String(200), nullable=False),  # the base model id (an alias is resolved at creation)
    Column("training_file", String(64), nullable=False),
    Column("validation_file", String(64), nullable=True),
    Column("suffix", String(64), nullable=True),
    Column("seed", BigInteger, nullable=False),
    Column("method", JSONValue, nullable=False),  # {"type": "supervised", "supervised": {...}} as requested
    Column("hyperparameters", JSONValue, nullable=False),  # requested (numbers or "auto"); resolved once known
    Column("user_metadata", JSONValue, nullable=True),
    Column("status", String(32), nullable=False),
    Column("fine_tuned_model", String(300), nullable=True),  # set when it succeeds
    Column("output_model", String(300), nullable=False),  # the id the model gets (fixed at creation)
    Column("trained_tokens", BigInteger, nullable=True),
    Column("error", JSONValue, nullable=True),  # {code, message, param} when failed
    Column("result_files", JSONValue, nullable=False),
    Column("estimated_finish", BigInteger, nullable=True),
    Column("started_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    Column("cancel_requested", Integer, nullable=False, server_default="0"),
    Column("worker_id", String(200), nullable=True),  # who holds it (validating / running)
    Column("heartbeat_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),  # training starts (1 + resumes)
    Index("ix_fine_tuning_jobs_workspace_created", "workspace_id", "created_at", "id"),
    Index("ix_fine_tuning_jobs_status_created", "status", "created_at"),
)

fine_tuning_job_events = Table(
    "fine_tuning_job_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("level", String(8), nullable=False),  # info | warn | error
    Column("type", String(16), nullable=False),  # message | metrics
    Column("message", Text, nullable=False),
    Column("data", JSONValue, nullable=True),
    Index("ix_fine_tuning_job_events_job_seq", "job_id", "seq"),
)

fine_tuning_checkpoints = Table(
    "fine_tuning_checkpoints",
    metadata,
    Column("id", String(64), primary_key=True),  # ftckpt-<24 hex>
    Column("job_id", String(64), ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("step_number", Integer, nullable=False),
    Column("metrics", JSONValue, nullable=False),
    Column("fine_tuned_model_checkpoint", String(300), nullable=False),
    Column("path", String(300), nullable=False),  # relative to the home
    UniqueConstraint("job_id", "step_number"),
)

# Aliases of served models, versioned: every change (a new target, a rollback, a removal: model NULL) is a new
# version; the newest version of a name is the alias. Resolved per request, so every replica sees a change at once.
model_aliases = Table(
    "model_aliases",
    metadata,
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("model", String(300), nullable=True),  # what the alias names: a model id or another alias; NULL: removed
    Column("note", String(500), nullable=True),  # why: "set", "rollback to v2", "removed"
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("workspace_id", "name", "version"),
)

fine_tuned_models = Table(
    "fine_tuned_models",
    metadata,
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("id", String(300), nullable=False),  # ft:<base>:<workspace>:<suffix>:<short id>
    Column("base_model", String(200), nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("adapter_dir", String(300), nullable=False),  # relative to the home
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "id"),
)

# -- automations (tracetune.loop): rule → dataset version → job → evaluation → gate → alias ----------------------

automations = Table(
    "automations",
    metadata,
    Column("workspace_id", Uuid, ForeignKey("workspaces.id"), nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", String(200), nullable=False),
    Column("rule", JSONValue, nullable=False),  # tracetune.loop.rules.Rule, as checked at creation
    Column("paused", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("workspace_id", "name"),
)

_ACTIVE_FIRING = "status IN ('queued', 'running')"
automation_firings = Table(
    "automation_firings",
    metadata,
    Column("id", Uuid, nullable=False),
    Column("workspace_id", Uuid, nullable=False),
    Column("automation_id", Uuid, ForeignKey("automations.id"), nullable=False),
    Column("number", Integer, nullable=False),  # 1, 2, … per automation
    Column("trigger", String(200), nullable=False),  # "manual", "120 new runs", "schedule"
    Column("status", String(20), nullable=False),  # queued, running, succeeded, failed
    Column("step", String(20), nullable=True),  # the step running or next: dataset, train, evaluate, decide
    Column("attempts", Integer, nullable=False),
    Column("steps", JSONValue, nullable=False),  # [{step, status, message, at}], the firing's own log
    Column("runs_selected", Integer, nullable=True),
    Column("dataset_version_id", Uuid, nullable=True),
    Column("job_id", String(64), nullable=True),
    Column("candidate_model", String(300), nullable=True),
    Column("current_model", String(300), nullable=True),
    Column("evaluation", JSONValue, nullable=True),  # replay results: per model, summary + per example
    Column("decision", String(20), nullable=True),  # promoted, refused
    Column("reason", Text, nullable=True),  # the gate's checks, or why the firing failed
    Column("alias_version", Integer, nullable=True),
    Column("worker_id", String(100), nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("id"),
    UniqueConstraint("automation_id", "number"),
    # two firings of one automation never overlap: at most one is queued or running (the database says so)
    Index(
        "ux_automation_firings_active",
        "automation_id",
        unique=True,
        sqlite_where=text(_ACTIVE_FIRING),
        postgresql_where=text(_ACTIVE_FIRING),
    ),
)

automation_runs = Table(  # the runs a firing took (trained on, or sampled out): the next firing takes new ones only
    "automation_runs",
    metadata,
    Column("automation_id", Uuid, ForeignKey("automations.id"), nullable=False),
    Column("run_id", Uuid, nullable=False),
    Column("firing_id", Uuid, nullable=False),
    Column("sampled", Boolean, nullable=False),  # False: left out by the rule's sampling rate
    PrimaryKeyConstraint("automation_id", "run_id"),
    Index("ix_automation_runs_firing", "firing_id"),
)
