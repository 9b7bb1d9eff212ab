"""Uploaded files (the OpenAI-compatible ``/v1/files``): a row per file, the bytes in a blob.

A file's bytes are the blob ``files/<workspace id>/<file id>`` (:mod:`tracetune.store.blobs`; the row's
``blob_path`` is the part after ``files/``). ``create`` checks the upload first (purpose, expiry, and for
``fine-tune`` that the bytes are UTF-8 JSONL), then writes the blob durably (and uploads it to the shared object
store when there is one), and only then commits the row: a file that is listed always has its bytes, and a rejected
upload leaves nothing behind. ``delete`` removes the row, then the blob. Every query is scoped to one workspace:
another workspace's file is not found.
"""

from __future__ import annotations

import builtins
import secrets
import time
import uuid
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import and_, delete, insert, or_, select

from tracetune.errors import InvalidInput, NotFound
from tracetune.store.blobs import Blobs
from tracetune.store.engine import Database
from tracetune.store.rows import FilePurpose, FileRow
from tracetune.store.schema import files

PURPOSES = ("fine-tune", "fine-tune-results", "user_data", "batch", "assistants", "vision")
EXPIRY_ANCHORS = ("created_at",)
MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 3600, 30 * 24 * 3600
MAX_FILENAME = 500


def new_file_id() -> str:
    """``file-<24 hex>``: the upload time in nanoseconds then 32 random bits, so that ``(created_at, id)`` orders
    the files of one second in upload order."""
    return f"file-{time.time_ns():016x}{secrets.token_hex(4)}"


def check_jsonl(data: bytes) -> None:
    """Refuse (``InvalidInput`` naming the line) bytes that are not UTF-8 JSONL with one JSON object a line.

    Blank lines at the very end are allowed. Only the framing is checked here; the chat format of each record
    is validated when a fine-tuning job uses the file (as OpenAI does)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the file is not UTF-8 text (byte {exc.start}); a fine-tune file must be JSONL",
            field="file",
            line=data[: exc.start].count(b"\n") + 1,
            code="invalid_file_format",
        ) from None
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InvalidInput(
            "the file is empty; a fine-tune file must be JSONL", field="file", code="invalid_file_format"
        )
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise InvalidInput(
                "a blank line inside the file; a fine-tune file holds one JSON object per line",
                field="file",
                line=number,
                code="invalid_file_format",
            )
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(
                f"line {number} is not valid JSON ({exc}); a fine-tune file must be JSONL",
                field="file",
                line=number,
                code="invalid_file_format",
            ) from None
        if not isinstance(value, dict):
            raise InvalidInput(
                f"line {number} is a JSON {type(value).__name__}, not an object; a fine-tune file holds one "
                "JSON object per line",
                field="file",
                line=number,
                code="invalid_file_format",
            )


def check_upload(purpose: str, filename: str, data: bytes) -> None:
    """Everything that can be wrong with an upload, raised before anything is written."""
    if purpose not in PURPOSES:
        raise InvalidInput(
            f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", field="purpose", code="invalid_value"
        )
    if not filename or len(filename) > MAX_FILENAME or "\x00" in filename:
        raise InvalidInput(
            f"the file part needs a filename of 1 to {MAX_FILENAME} characters", field="file", code="invalid_value"
        )
    if purpose == "fine-tune":
        check_jsonl(data)


def _expires_at(created_at: int, anchor: str | None, seconds: int | None) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor not in EXPIRY_ANCHORS:
        raise InvalidInput(
            f"expires_after[anchor] must be one of {', '.join(EXPIRY_ANCHORS)}",
            field="expires_after[anchor]",
            code="invalid_value",
        )
    if seconds is None or not MIN_EXPIRY_SECONDS <= seconds <= MAX_EXPIRY_SECONDS:
        raise InvalidInput(
            f"expires_after[seconds] must be an integer from {MIN_EXPIRY_SECONDS} to {MAX_EXPIRY_SECONDS}",
            field="expires_after[seconds]",
            code="invalid_value",
        )
    return created_at + seconds


def _key(row: FileRow) -> str:
    return f"files/{row['blob_path']}"


def _live(now: int) -> Any:
    return or_(files.c.expires_at.is_(None), files.c.expires_at > now)


class FileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        workspace_id: uuid.UUID,
        blobs: Blobs,
        *,
        filename: str,
        purpose: str,
        data: bytes,
        expires_anchor: str | None = None,
        expires_seconds: int | None = None,
    ) -> FileRow:
        """Check and store one upload; the stored row (``status`` ``processed``)."""
        check_upload(purpose, filename, data)
        created_at = int(time.time())
        row: FileRow = {
            "id": new_file_id(),
            "workspace_id": workspace_id,
            "filename": filename,
            "purpose": cast(FilePurpose, purpose),  # checked by check_upload
            "bytes": len(data),
            "created_at": created_at,
            "expires_at": _expires_at(created_at, expires_anchor, expires_seconds),
            "status": "processed",
            "status_details": None,
            "blob_path": "",
        }
        row["blob_path"] = f"{workspace_id}/{row['id']}"
        blobs.write(_key(row), data)
        try:
            with self.db.write() as conn:
                conn.execute(insert(files).values(**row))
        except BaseException:
            blobs.delete(_key(row))
            raise
        return row

    def get(self, workspace_id: uuid.UUID, file_id: str) -> FileRow:
        with self.db.read() as conn:
            found = conn.execute(
                select(files).where(
                    files.c.workspace_id == workspace_id, files.c.id == file_id, _live(int(time.time()))
                )
            ).first()
        if found is None:
            raise NotFound(f"No such File object: {file_id}", field="id", code="file_not_found")
        return cast(FileRow, dict(found._mapping))

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10000,
        order: str = "desc",
    ) -> tuple[builtins.list[FileRow], bool]:
        """A page of the workspace's files ordered by ``(created_at, id)`` and whether more follow."""
        query = select(files).where(files.c.workspace_id == workspace_id, _live(int(time.time())))
        if purpose is not None:
            query = query.where(files.c.purpose == purpose)
        with self.db.read() as conn:
            if after is not None:
                cursor = conn.execute(
                    select(files.c.created_at, files.c.id).where(
                        files.c.workspace_id == workspace_id, files.c.id == after
                    )
                ).first()
                if cursor is None:
                    raise NotFound(f"No such File object: {after} (the 'after' cursor)", field="after")
                at, fid = cursor
                if order == "asc":
                    query = query.where(or_(files.c.created_at > at, and_(files.c.created_at == at, files.c.id > fid)))
                else:
                    query = query.where(or_(files.c.created_at < at, and_(files.c.created_at == at, files.c.id < fid)))
            if order == "asc":
                query = query.order_by(files.c.created_at.asc(), files.c.id.asc())
            else:
                query = query.order_by(files.c.created_at.desc(), files.c.id.desc())
            rows = [cast(FileRow, dict(r._mapping)) for r in conn.execute(query.limit(limit + 1))]
        return rows[:limit], len(rows) > limit

    def blob(self, workspace_id: uuid.UUID, file_id: str, blobs: Blobs) -> Path:
        """The local path of a file's bytes, fetched from the shared object store when this data home lacks them
        (``NotFound`` when the file is not the workspace's)."""
        return blobs.path(_key(self.get(workspace_id, file_id)))

    def delete(self, workspace_id: uuid.UUID, file_id: str, blobs: Blobs) -> None:
        """Remove the row (committed), then the blob."""
        row = self.get(workspace_id, file_id)
        with self.db.write() as conn:
            gone = conn.execute(
                delete(files).where(files.c.workspace_id == workspace_id, files.c.id == file_id)
            ).rowcount
        if not gone:
            raise NotFound(f"No such File object: {file_id}", field="id", code="file_not_found")
        blobs.delete(_key(row))
