"""Request bodies → parts: zstd decoding with a size cap, and multipart/form-data splitting.

The multipart grammar is python-multipart's (the parser starlette uses); this module only collects
``(name, content_type, bytes)`` per part, with no per-field size limit (runs can carry megabytes of inputs).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import zstandard
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from tracetune.errors import InvalidInput, PayloadTooLarge


@dataclass
class Part:
    name: str
    content_type: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body with its ``Content-Encoding`` undone (zstd, gzip or none), never longer than ``max_bytes``."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding == "zstd":
        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as reader:
                data = reader.read(max_bytes + 1)
        except zstandard.ZstdError as exc:
            raise InvalidInput(f"the body is not valid zstd: {exc}", field="Content-Encoding") from None
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"the decompressed body is over the limit of {max_bytes} bytes", field="body")
        return data
    if encoding == "gzip":
        import gzip
        import zlib

        try:
            with gzip.GzipFile(fileobj=io.BytesIO(body)) as gz:
                data = gz.read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise InvalidInput(f"the body is not valid gzip: {exc}", field="Content-Encoding") from None
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"the decompressed body is over the limit of {max_bytes} bytes", field="body")
        return data
    raise InvalidInput(f"unsupported Content-Encoding {content_encoding!r} (use zstd, gzip or none)",
                       field="Content-Encoding")


def boundary_of(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        raise InvalidInput("expected Content-Type multipart/form-data", field="Content-Type")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart Content-Type has no boundary", field="Content-Type")
    return boundary


def split_parts(body: bytes, content_type: str | None) -> list[Part]:
    """Every part of a multipart/form-data body, in order."""
    boundary = boundary_of(content_type)
    parts: list[Part] = []
    chunks: list[bytes] = []
    headers: dict[str, str] = {}
    header_field: list[bytes] = []
    header_value: list[bytes] = []
    state = {"ended": False}

    def on_part_begin() -> None:
        chunks.clear()
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        headers[b"".join(header_field).decode("latin-1").lower()] = b"".join(header_value).decode("latin-1")
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks.append(data[start:end])

    def on_part_end() -> None:
        _, params = parse_options_header(headers.get("content-disposition", ""))
        name = params.get(b"name")
        if name is None:
            raise InvalidInput(f"multipart part #{len(parts) + 1} has no name", field="multipart")
        parts.append(
            Part(
                name=name.decode("utf-8", "replace"),
                content_type=headers.get("content-type", "application/octet-stream"),
                data=b"".join(chunks),
                headers=dict(headers),
            )
        )

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
        max_header_count=32,
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}", field="multipart") from None
    if not state["ended"]:
        raise InvalidInput("the multipart body ends before its closing boundary", field="multipart")
    return parts
