"""The row TypedDicts name exactly the columns of their tables: a column added to the schema without its key (or a
key for a dropped column) fails here, so the types mypy checks the upper layers against cannot drift."""

from __future__ import annotations

import typing

import pytest

from tracetune.store import rows, schema

PAIRS = [
    (rows.RunRow, schema.runs),
    (rows.FeedbackRow, schema.feedback),
    (rows.FeedbackTokenRow, schema.feedback_tokens),
    (rows.FeedbackConfigRow, schema.feedback_configs),
    (rows.QueueRow, schema.annotation_queues),
    (rows.QueueItemRow, schema.annotation_queue_items),
    (rows.DatasetRow, schema.datasets),
    (rows.DatasetVersionRow, schema.dataset_versions),
    (rows.ExampleRow, schema.examples),
    (rows.ComparativeExperimentRow, schema.comparative_experiments),
    (rows.FileRow, schema.files),
    (rows.JobRow, schema.fine_tuning_jobs),
    (rows.JobEventRow, schema.fine_tuning_job_events),
    (rows.CheckpointRow, schema.fine_tuning_checkpoints),
    (rows.ModelRow, schema.fine_tuned_models),
]


@pytest.mark.parametrize(("row", "table"), PAIRS, ids=[t.name for _, t in PAIRS])
def test_row_keys_are_the_table_columns(row, table):
    assert set(typing.get_type_hints(row)) == {c.key for c in table.columns}


def test_rows_read_back_carry_the_declared_keys(tmp_path):
    from tracetune.store import open_store
    from tracetune.store.blobs import Blobs

    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ws = store.workspaces.ensure("default")
    row = store.files.create(ws.id, Blobs(tmp_path), filename="a.jsonl", purpose="fine-tune", data=b'{"a": 1}\n')
    assert set(store.files.get(ws.id, row["id"])) == set(typing.get_type_hints(rows.FileRow)) == set(row)
