"""The ingest service: every LangSmith write path (multipart, batch, single post/patch, feedback) ends here.

A request is validated completely before anything is written: one bad operation rejects the whole request
with a 4xx naming it (nothing half-written), and a 2xx means everything in it is committed.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection

from tracetune.errors import Forbidden, InvalidInput, NotFound, shown
from tracetune.ingest.feedback_records import check_score, feedback_record
from tracetune.ingest.multipart import Part, split_parts
from tracetune.ingest.otlp import decode_request, runs_from_request
from tracetune.ingest.records import Kind, merge_records, parse_uuid, run_record
from tracetune.store import Store
from tracetune.store.blobs import Blobs
from tracetune.store.rows import FeedbackRow

RUN_SUBFIELDS = {"inputs", "outputs", "events", "extra", "error", "serialized"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


@dataclass
class IngestResult:
    posts: int = 0
    patches: int = 0
    feedback: int = 0
    attachments: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "posts": self.posts,
            "patches": self.patches,
            "feedback": self.feedback,
            "attachments": self.attachments,
        }


def _part_json(data: bytes, part_name: str) -> Any:
    """The JSON value of a multipart part; errors name the part (``part 'post.<id>.inputs'``)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc}", field=f"part {part_name!r}") from None


class IngestService:
    def __init__(self, store: Store, blobs: Blobs) -> None:
        self.store = store
        self.blobs = blobs

    # -- entry points -------------------------------------------------------------------------------------

    def multipart(self, workspace_id: uuid.UUID, body: bytes, content_type: str | None) -> IngestResult:
        """``POST /runs/multipart``: parts ``post.<id>[.<field>]``, ``patch.<id>[.<field>]``,
        ``feedback.<id>`` and ``attachment.<run_id>.<name>``; the body is already decompressed."""
        ops: dict[tuple[str, str], dict[str, Any]] = {}
        order: list[tuple[str, str]] = []
        feedback: list[dict[str, Any]] = []
        attachments: list[tuple[uuid.UUID, str, bytes]] = []
        for part in split_parts(body, content_type):
            self._collect_part(part, ops, order, feedback, attachments)
        posts: list[Any] = []
        patches: list[Any] = []
        part_names: dict[str, list[str]] = {"post": [], "patch": []}  # errors name the part, not an index
        for key in order:
            kind, run_id = key
            (posts if kind == "post" else patches).append(ops[key])
            part_names[kind].append(f"part '{kind}.{run_id}'")
        return self._apply(workspace_id, posts, patches, feedback, attachments, part_names=part_names)

    def batch(self, workspace_id: uuid.UUID, payload: Any) -> IngestResult:
        """``POST /runs/batch``: ``{"post": [run, …], "patch": [run, …]}``."""
        if not isinstance(payload, dict):
            raise InvalidInput("the body must be a JSON object with 'post' and/or 'patch' lists", field="body")
        unknown = set(payload) - {"post", "patch"}
        if unknown:
            raise InvalidInput(f"unknown key(s) {sorted(unknown)}; expected 'post' and/or 'patch'", field="body")
        lists = {}
        for kind in ("post", "patch"):
            items = payload.get(kind) or []
            if not isinstance(items, list):
                raise InvalidInput("must be a list of runs", field=kind)
            lists[kind] = items
        return self._apply(workspace_id, lists["post"], lists["patch"], [], [], where_prefix=True)

    def otlp(self, workspace_id: uuid.UUID, body: bytes, content_type: str | None, project: str | None) -> IngestResult:
        """``POST …/otel/v1/traces``: an OTLP/HTTP export (protobuf or JSON), one run per span
        (``ingest.otlp``); ``project`` is the ``Langsmith-Project`` header."""
        runs, places = runs_from_request(decode_request(body, content_type), project)
        return self._apply(workspace_id, runs, [], [], [], part_names={"post": places, "patch": []})

    def post_run(self, workspace_id: uuid.UUID, run: Any) -> IngestResult:
        return self._apply(workspace_id, [run], [], [], [], where_prefix=False)

    def patch_run(self, workspace_id: uuid.UUID, run_id: str, run: Any) -> IngestResult:
        rid = parse_uuid(run_id, "run_id")
        if not isinstance(run, dict):
            raise InvalidInput("the body must be a JSON object", field="body")
        if run.get("id") is not None and parse_uuid(run["id"], "id") != rid:
            raise InvalidInput("the body's id differs from the id in the path", field="id")
        return self._apply(workspace_id, [], [{**run, "id": str(rid)}], [], [], where_prefix=False)

    def feedback(self, workspace_id: uuid.UUID, obj: Any) -> FeedbackRow:
        """``POST /feedback``: checked against its key's configuration (a ``feedback_config`` in the body makes
        the key's first one). Feedback inside multipart batches is stored as sent: a bad score must never cost
        the runs it travels with."""
        rec = feedback_record(obj, "body")
        if rec["id"] is None:
            rec["id"] = uuid.uuid4()
        given = obj.get("feedback_config") if isinstance(obj, dict) else None
        self._check_configured(workspace_id, rec["key"], rec["score"], given)
        return self.store.feedback.create(workspace_id, rec)

    def _check_configured(self, workspace_id: uuid.UUID, key: str, score: Any, given: Any) -> None:
        stored = self.store.feedback_configs.get(workspace_id, key)
        if stored is None and given is not None:
            if not isinstance(given, dict) or given.get("type") not in ("continuous", "categorical", "freeform"):
                raise InvalidInput(
                    "feedback_config must be an object with type continuous, categorical or freeform",
                    field="feedback_config",
                )
            stored = self.store.feedback_configs.create(workspace_id, key, given, None)
        check_score(score, stored["feedback_config"] if stored else None)

    def token_feedback(self, token_id: uuid.UUID, given: dict[str, Any]) -> FeedbackRow:
        """Feedback through a pre-signed token (no API key): the token's run, key and workspace, ``given``'s
        ``score``, ``value``, ``comment``, ``correction`` and ``metadata``. 404 for an unknown token, 403 once it
        has expired, 400 for a score outside the token's continuous bounds. A token that names its feedback id
        writes that one feedback (created, then updated by later uses)."""
        tokens = self.store.feedback_tokens
        token = tokens.get(token_id)
        if tokens.is_expired(token):
            raise Forbidden(f"this feedback link expired at {token['expires_at'].isoformat()}", field="token")
        key, config = token["feedback_key"], token["feedback_config"]
        self._check_configured(token["workspace_id"], key, given.get("score"), config)
        obj = {k: given.get(k) for k in ("score", "value", "comment", "correction")}
        obj.update(key=token["feedback_key"], run_id=str(token["run_id"]))
        obj["feedback_source"] = {"type": "api", "metadata": given.get("metadata") or {}, "token_id": str(token_id)}
        rec = feedback_record(obj, "body")
        workspace_id, feedback_id = token["workspace_id"], token["feedback_id"]
        if feedback_id is not None:
            try:
                self.store.feedback.get(workspace_id, feedback_id)
            except NotFound:
                pass
            else:
                changes = {k: rec[k] for k in ("score", "value", "comment", "correction") if rec[k] is not None}
                return self.store.feedback.update(workspace_id, feedback_id, changes)
        rec["id"] = feedback_id or uuid.uuid4()
        return self.store.feedback.create(workspace_id, rec)

    # -- internals ----------------------------------------------------------------------------------------

    @staticmethod
    def _collect_part(
        part: Part,
        ops: dict[tuple[str, str], dict[str, Any]],
        order: list[tuple[str, str]],
        feedback: list[dict[str, Any]],
        attachments: list[tuple[uuid.UUID, str, bytes]],
    ) -> None:
        name = part.name
        kind, _, rest = name.partition(".")
        if kind in ("post", "patch"):
            run_id, _, sub = rest.partition(".")
            key = (kind, run_id)
            op = ops.get(key)
            if op is None:  # the first part of this operation: its run id is checked once
                if not run_id:
                    raise InvalidInput("a run part needs a run id: post.<id> or patch.<id>", field=f"part {name!r}")
                parse_uuid(run_id, f"part {name!r}")
                op = ops[key] = {}
                order.append(key)
            value = _part_json(part.data, name)
            if not sub:
                if not isinstance(value, dict):
                    raise InvalidInput("must be a JSON object", field=f"part {name!r}")
                body_id = value.get("id")
                if (
                    body_id is not None
                    and body_id != run_id  # the SDK writes the same text: no UUID parsing on the common path
                    and parse_uuid(body_id, f"part {name!r}.id") != parse_uuid(run_id, name)
                ):
                    raise InvalidInput(
                        f"the body's id {shown(body_id)} differs from the run id in the part name",
                        field=f"part {name!r}.id",
                    )
                if op:
                    for k, v in value.items():
                        op.setdefault(k, v)
                else:
                    op.update(value)
                op["id"] = run_id
            elif sub in RUN_SUBFIELDS:
                op[sub] = value
            else:
                raise InvalidInput(
                    f"unknown run field {sub!r}; expected one of {sorted(RUN_SUBFIELDS)}", field=f"part {name!r}"
                )
        elif kind == "feedback":
            value = _part_json(part.data, name)
            rec = feedback_record(value, f"part {name!r}")
            if rec["id"] is None:
                rec["id"] = parse_uuid(rest, f"part {name!r}")
            feedback.append(rec)
        elif kind == "attachment":
            run_id, _, att_name = rest.partition(".")
            rid = parse_uuid(run_id, f"part {name!r}")
            if not _SAFE_NAME.match(att_name):
                raise InvalidInput("attachment names are 1-200 letters, digits, '-' or '_'", field=f"part {name!r}")
            attachments.append((rid, att_name, part.data))
        else:
            raise InvalidInput(
                f"unknown part name {name!r}; expected post.<id>, patch.<id>, feedback.<id> or attachment.<id>.<name>",
                field=f"part {name!r}",
            )

    def _apply(
        self,
        workspace_id: uuid.UUID,
        posts: list[Any],
        patches: list[Any],
        feedback: list[dict[str, Any]],
        attachments: list[tuple[uuid.UUID, str, bytes]],
        *,
        where_prefix: bool = True,
        part_names: dict[str, list[str]] | None = None,  # what errors call each record (else kind[i])
    ) -> IngestResult:
        def where(kind: Kind, i: int) -> str:
            if part_names is not None:
                return part_names[kind][i]
            return f"{kind}[{i}]" if where_prefix else "body"

        post_recs = merge_records([run_record(r, "post", where("post", i)) for i, r in enumerate(posts)], "post")
        patch_recs = merge_records([run_record(r, "patch", where("patch", i)) for i, r in enumerate(patches)], "patch")
        # Attachments are files; they are on disk (fsync'd) before the runs that own them are committed.
        for run_id, name, data in attachments:
            self._write_attachment(workspace_id, run_id, name, data)
        # Rows are bound before the write lock is taken, so the lock (one writer at a time) covers only SQL
        # and the commit; another request's parsing and binding overlaps with them.
        prepared = self.store.runs.prepare(workspace_id, post_recs, patch_recs) if post_recs or patch_recs else None

        def write(conn: Connection) -> None:  # runs and feedback of one request commit together
            if prepared is not None:
                self.store.runs.write(prepared, conn)
            self.store.feedback.create_many(workspace_id, feedback, ignore_existing=True, conn=conn)

        # Two requests upserting the same runs can deadlock on PostgreSQL (an SDK retry racing a newer batch);
        # the loser is aborted whole and run again here, so the client sees neither an error nor a partial write.
        self.store.db.write_retrying(write)
        return IngestResult(len(post_recs), len(patch_recs), len(feedback), len(attachments))

    def _write_attachment(self, workspace_id: uuid.UUID, run_id: uuid.UUID, name: str, data: bytes) -> None:
        self.blobs.write(f"attachments/{workspace_id}/{run_id}/{name}", data)
