"""Export: runs (from the store or a JSONL file) → fine-tuning JSONL and, when named, a stored dataset.

``export_dataset(store, workspace_id, selection, options, out=…)`` streams the selection out of the store with
ONE statement (the ``runs_query.where_clauses`` of the selection, ordered by ``trace_id, dotted_order`` and read
``yield_per`` 500 rows), cuts it at trace boundaries and feeds each trace to a ``DatasetBuilder``
(``dataset_builder.py``: conversion, corrections, merging, hygiene, validation, split). With
``use_corrections``, the corrections of each batch of 500 runs are read in one query. ``export_runs`` does
the same for any iterable of run dicts (``read_runs_file`` reads a JSONL file of LangSmith runs lazily; a
trace's runs are merged when they are consecutive in the file). Memory stays flat in the number of runs: one
trace, one batch and the duplicate digests (with ``dedupe``) are held, never the dataset.

Output: with ``out=FILE`` the train records go to FILE and, with a ``split`` ratio, the validation records to
``validation_path(FILE)``: ``.validation`` inserted before the suffix (``data.jsonl`` → ``data.validation.jsonl``).
Each file is written under a temporary name and moved into place at the end. With ``options.name`` the
records (with their lineage: run ids, trace id, split) are stored as the next version of that dataset, in
one transaction at the end (spooled to a temporary file meanwhile).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from tracetune.convert.dataset_builder import BuiltRecord, DatasetBuilder, ExportOptions, Selection
from tracetune.convert.examples import example_from_record
from tracetune.convert.records import dumps_record
from tracetune.convert.target_check import RecordInspection, TokenCounter, inspect_record
from tracetune.errors import InvalidInput
from tracetune.query.selection import selection_statement, stream_run_groups
from tracetune.store import Store
from tracetune.store.datasets import DatasetRecord

__all__ = [
    "ExportResult",
    "TargetModel",
    "export_dataset",
    "export_runs",
    "load_target",
    "preview_dataset",
    "read_runs_file",
    "validation_path",
]


@dataclass
class TargetModel:
    """The base model records are checked against: its id, context length and a token counter."""

    model_id: str
    context_length: int
    counter: TokenCounter

    def inspect(self, record: dict[str, Any], line: int) -> RecordInspection:
        return inspect_record(record, line, self.counter, self.context_length)


def load_target(home: Path, model_id: str | None = None) -> TargetModel:
    """The target model ``model_id`` (default: the built-in base model) of the data home ``home``."""
    from tracetune.models import DEFAULT_MODEL_ID, load_tokenizer, resolve

    model_id = model_id or DEFAULT_MODEL_ID
    spec = resolve(home, model_id)
    return TargetModel(model_id, spec.context_length, TokenCounter(load_tokenizer(home, model_id)))


def _settings_home() -> Path:
    from tracetune.config import load_settings

    return load_settings().home


@dataclass
class ExportResult:
    summary: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)  # split → file written
    dataset: dict[str, Any] | None = None  # the stored dataset (with ``options.name``)


def validation_path(path: Path) -> Path:
    """Where the validation part of ``path`` goes: ``data.jsonl`` → ``data.validation.jsonl``."""
    return path.with_name(f"{path.stem}.validation{path.suffix}")


# -- sources -------------------------------------------------------------------------------------------------


def read_runs_file(path: Path, builder: DatasetBuilder) -> Iterator[Any]:
    """The runs of a JSONL file, one per non-blank line; a line that is not a JSON object is counted as skipped
    (``invalid_json`` / ``malformed_run``) on ``builder`` and not yielded."""
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                run = orjson.loads(line)
            except orjson.JSONDecodeError:
                builder.skip("invalid_json")
                continue
            if isinstance(run, dict):
                yield run
            else:
                builder.skip("malformed_run")


def _trace_groups(runs: Iterable[Any]) -> Iterator[list[Any]]:
    """Consecutive runs of the same trace (``trace_id``, else the run's own id), one list per trace."""
    group: list[Any] = []
    key: Any = None
    for run in runs:
        get = run.get if isinstance(run, dict) else lambda k, r=run: getattr(r, k, None)
        k = get("trace_id") or get("id")
        if group and k != key:
            yield group
            group = []
        key = k
        group.append(run)
    if group:
        yield group


# -- sinks ---------------------------------------------------------------------------------------------------


class _Sinks:
    """The JSONL files (written under temporary names, moved into place on ``commit``) and the dataset spool."""

    def __init__(self, out: Path | None, split: bool, spool: bool) -> None:
        self.paths: dict[str, Path] = {}
        self._files: dict[str, IO[bytes]] = {}
        self._temps: dict[str, Path] = {}
        if out is not None:
            self.paths["train"] = out
            if split:
                self.paths["validation"] = validation_path(out)
            for name, path in self.paths.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
                self._temps[name] = Path(temp)
                self._files[name] = os.fdopen(fd, "wb", buffering=1 << 20)
        self.spool: IO[bytes] | None = tempfile.TemporaryFile(buffering=1 << 20) if spool else None  # noqa: SIM115

    def write(self, built: BuiltRecord) -> None:
        if self._files:
            self._files[built.split if built.split in self._files else "train"].write(dumps_record(built.record))
        if self.spool is not None:
            self.spool.write(orjson.dumps(tuple(built), option=orjson.OPT_APPEND_NEWLINE))

    def spooled(self) -> Iterator[DatasetRecord]:
        assert self.spool is not None
        self.spool.flush()
        self.spool.seek(0)
        for line in self.spool:
            split, run_ids, trace_id, record = orjson.loads(line)
            yield DatasetRecord(split, run_ids, uuid.UUID(trace_id) if trace_id else None, record)

    def commit(self) -> None:
        for name, f in self._files.items():
            f.close()
            os.replace(self._temps[name], self.paths[name])
        self._files = {}

    def close(self) -> None:
        for name, f in self._files.items():
            f.close()
            self._temps[name].unlink(missing_ok=True)
        self._files = {}
        if self.spool is not None:
            self.spool.close()


# -- the pipeline --------------------------------------------------------------------------------------------

Group = tuple[list[Any], dict[str, Any], dict[str, float]]  # one trace's runs, their corrections, their ratings


def _stream(store: Store, workspace_id: uuid.UUID, stmt: Any, options: ExportOptions) -> Generator[Group]:
    return stream_run_groups(
        store, workspace_id, stmt, corrections=options.use_corrections, rating_key=options.rating_key
    )


def _run(
    options: ExportOptions,
    target: TargetModel,
    groups: Callable[[DatasetBuilder], Iterable[Group]],
    out: Path | None,
    store_as: Callable[[dict[str, Any], Iterable[DatasetRecord]], dict[str, Any]] | None,
) -> ExportResult:
    if out is None and store_as is None:
        raise InvalidInput("nothing to write: give an output file or a dataset name", field="out")
    builder = DatasetBuilder(options, target.inspect)
    sinks = _Sinks(Path(out) if out is not None else None, options.split is not None, store_as is not None)
    try:
        for runs, fixes, ratings in groups(builder):
            for built in builder.add_group(runs, fixes, ratings):
                sinks.write(built)
        for built in builder.finish():
            sinks.write(built)
        summary = builder.summary.as_dict()
        summary["model"] = {"id": target.model_id, "context_length": target.context_length}
        dataset = store_as(summary, sinks.spooled()) if store_as is not None else None
        sinks.commit()
    finally:
        sinks.close()
    return ExportResult(summary, dict(sinks.paths), dataset)


def export_dataset(
    store: Store,
    workspace_id: uuid.UUID,
    selection: Selection,
    options: ExportOptions,
    *,
    out: Path | None = None,
    home: Path | None = None,
    target: TargetModel | None = None,
) -> ExportResult:
    """Export the runs ``selection`` picks from the store (see the module docstring).

    The target model is ``target``, else ``options.model`` of the data home ``home`` (default: the settings'
    ``TRACETUNE_HOME``). With ``options.name`` the result is also stored as the next version of that dataset
    (``ExportResult.dataset``).
    """
    target = target or load_target(home or _settings_home(), options.model)
    stmt = selection_statement(store, workspace_id, **selection.as_query())  # fails early: unknown project, bad filter

    def groups(_: DatasetBuilder) -> Iterable[Group]:
        return _stream(store, workspace_id, stmt, options)

    store_as = None
    if options.name:
        name = options.name

        def store_as(summary: dict[str, Any], records: Iterable[DatasetRecord]) -> dict[str, Any]:
            return store.datasets.create(
                workspace_id,
                name=name,
                selection=selection.as_dict(),
                options=options.as_dict(),
                summary=summary,
                records=records,
                to_example=example_from_record,
            )

    return _run(options, target, groups, out, store_as)


def preview_dataset(
    store: Store,
    workspace_id: uuid.UUID,
    selection: Selection,
    options: ExportOptions,
    *,
    limit: int = 20,
    home: Path | None = None,
    target: TargetModel | None = None,
) -> tuple[list[BuiltRecord], dict[str, Any]]:
    """The first ``limit`` records ``export_dataset`` would build from ``selection`` (same pipeline, nothing
    written) and the summary of the runs read until then: the problems it found (with run ids), skips, tokens.
    Stops reading at the end of the trace that completes ``limit`` records, so it stays fast on a big store."""
    target = target or load_target(home or _settings_home(), options.model)
    stmt = selection_statement(store, workspace_id, **selection.as_query())
    builder = DatasetBuilder(options, target.inspect)
    records: list[BuiltRecord] = []
    groups = _stream(store, workspace_id, stmt, options)
    try:
        for runs, fixes, ratings in groups:
            records.extend(builder.add_group(runs, fixes, ratings))
            if len(records) >= limit:
                break
        else:
            records.extend(builder.finish())
    finally:
        groups.close()  # ends the streamed statement (and its read) now
    summary = builder.summary.as_dict()
    summary["model"] = {"id": target.model_id, "context_length": target.context_length}
    return records[:limit], summary


def export_runs(
    runs: Iterable[Any] | Path,
    options: ExportOptions,
    *,
    out: Path,
    target: TargetModel | None = None,
    home: Path | None = None,
) -> ExportResult:
    """Export runs given directly (run dicts or ``langsmith.schemas.Run`` objects), or the JSONL file ``runs``,
    for the target model ``target`` (else ``options.model`` of the data home ``home``, as ``export_dataset``).

    Runs of one trace are merged when they come one after the other. Corrections are not looked up (they live
    in the store); ``options.name`` is ignored (nothing is stored).
    """

    target = target or load_target(home or _settings_home(), options.model)

    def groups(builder: DatasetBuilder) -> Iterable[Group]:
        source = read_runs_file(runs, builder) if isinstance(runs, Path) else runs
        return ((group, {}, {}) for group in _trace_groups(source))

    return _run(options, target, groups, out, None)
