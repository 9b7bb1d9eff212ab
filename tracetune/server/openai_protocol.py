"""The OpenAI API shapes tracetune answers with, field by field (the openai client validates them strictly)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from tracetune.models.registry import ModelSpec

FilePurpose = Literal[
    "assistants", "assistants_output", "batch", "batch_output", "fine-tune", "fine-tune-results", "vision", "user_data"
]


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"]
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FileList(BaseModel):
    """A cursor page: the client asks for the next one with ``after=<last_id>`` while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tracetune"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def file_object(row: dict[str, Any]) -> FileObject:
    return FileObject(
        id=row["id"],
        bytes=row["bytes"],
        created_at=row["created_at"],
        filename=row["filename"],
        purpose=row["purpose"],
        status=row["status"],
        expires_at=row["expires_at"],
        status_details=row["status_details"],
    )


def file_list(rows: list[dict[str, Any]], has_more: bool) -> FileList:
    data = [file_object(r) for r in rows]
    return FileList(
        data=data, has_more=has_more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
    )


def model_object(spec: ModelSpec) -> Model:
    """A base model; ``created`` is when its weights were written (0 when they cannot be read)."""
    try:
        created = int(spec.weights_path.stat().st_mtime)
    except OSError:
        created = 0
    return Model(id=spec.id, created=created)
