"""Request bodies → parts: multipart/form-data splitting (``ingest.encoding`` undoes compression first).

The multipart grammar is python-multipart's (the parser starlette uses); this module only collects
``(name, content_type, bytes)`` per part, with no per-field size limit (runs can carry megabytes of inputs).

Bodies framed the way the SDKs frame them (every part: ``Content-Disposition: form-data; name="…"`` and a few
plain headers, CRLF everywhere, a closing boundary) are split by ``_split_plain``, a handful of ``bytes.find``
calls per part, which gives exactly the parts python-multipart gives for such bodies, about 20x faster.
Anything else (preamble, transport padding, a boundary-like line inside data, quoted-pair names, missing or
odd headers, a truncated body) goes to python-multipart, so every malformed body gets its error message.
"""

from __future__ import annotations

import re

from python_multipart.multipart import (
    TOKEN_CHARS,
    MultipartParseError,
    MultipartParser,
    parse_options_header,
)

from tracetune.errors import InvalidInput


class Part:
    """One part: its name, content type and bytes, and its headers (names lower-cased), which are built from
    the SDK's fixed header block only when someone asks for them."""

    __slots__ = ("_headers", "_raw", "content_type", "data", "name")

    def __init__(
        self,
        name: str,
        content_type: str,
        data: bytes,
        headers: dict[str, str] | None = None,
        *,
        raw: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.name = name
        self.content_type = content_type
        self.data = data
        self._headers = headers
        self._raw = raw  # (name bytes, Content-Length bytes) of an SDK header block

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            raw_name, length = self._raw or (self.name.encode(), str(len(self.data)).encode())
            self._headers = {
                "content-disposition": f'form-data; name="{raw_name.decode("latin-1")}"',
                "content-type": self.content_type,
                "content-length": length.decode("latin-1"),
            }
        return self._headers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Part):
            return NotImplemented
        return (self.name, self.content_type, self.data, self.headers) == (
            other.name,
            other.content_type,
            other.data,
            other.headers,
        )

    def __repr__(self) -> str:
        return f"Part(name={self.name!r}, content_type={self.content_type!r}, data=<{len(self.data)} bytes>)"


def boundary_of(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        raise InvalidInput("expected Content-Type multipart/form-data", field="Content-Type")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart Content-Type has no boundary", field="Content-Type")
    return boundary


MAX_PART_HEADERS = 32
_MAX_HEADER_LINE = 4096  # python-multipart refuses header lines over 4224 bytes; longer ones go to it
# The Content-Disposition the SDKs write; a name without quotes, backslashes or ';' means the same to
# python-multipart's parse_options_header as the bytes between the quotes.
_PLAIN_DISPOSITION = re.compile(r'form-data; name="([^"\\;]*)"(?:; filename="[^"\\;]*")?')
# The exact header block the langsmith SDK writes for a JSON part (one regex match instead of a line loop).
_SDK_HEADERS = re.compile(
    rb'Content-Disposition: form-data; name="([^"\\;\r\n]{0,4000})"\r\n'
    rb"Content-Type: ([^\r\n]{0,4000})\r\n"
    rb"Content-Length: ([0-9]{1,12})\r\n\r\n"
)


def split_parts(body: bytes, content_type: str | None) -> list[Part]:
    """Every part of a multipart/form-data body, in order."""
    boundary = boundary_of(content_type)
    parts = _split_plain(body, boundary)
    if parts is not None:
        return parts
    return _split_general(body, boundary)


def _split_plain(body: bytes, boundary: bytes) -> list[Part] | None:
    """The parts of a body in the SDKs' plain framing, or None when the body is anything else."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        return None
    separator = b"\r\n" + delimiter
    parts: list[Part] = []
    pos = len(delimiter) + 2
    while True:
        sdk = _SDK_HEADERS.match(body, pos)
        data_end = -1
        if sdk is not None:  # the SDK's three headers, in its order
            raw_name, ctype, length = sdk.groups()
            data_start = sdk.end()
            data_end = body.find(separator, data_start)
            if data_end >= 0:
                parts.append(
                    Part(
                        raw_name.decode("utf-8", "replace"),
                        ctype.lstrip(b" ").decode("latin-1"),
                        body[data_start:data_end],
                        raw=(raw_name, length),
                    )
                )
        else:
            parsed = _plain_headers(body, pos)
            if parsed is None:
                return None
            name, headers, data_start = parsed
            data_end = body.find(separator, data_start)
            if data_end >= 0:
                content_type = headers.get("content-type", "application/octet-stream")
                parts.append(Part(name, content_type, body[data_start:data_end], headers))
        if data_end < 0:
            return None
        after = data_end + len(separator)
        follows = body[after : after + 2]
        if follows == b"--":  # the closing boundary; like python-multipart, ignore any epilogue
            return parts
        if follows != b"\r\n":
            return None
        pos = after + 2


def _plain_headers(body: bytes, pos: int) -> tuple[str, dict[str, str], int] | None:
    """(part name, headers, start of the data) of the header block at ``pos``, or None if it is not plain."""
    headers_end = body.find(b"\r\n\r\n", pos)
    if headers_end <= pos:  # no blank line, or a part without headers
        return None
    lines = body[pos:headers_end].split(b"\r\n")
    if len(lines) > MAX_PART_HEADERS:
        return None
    headers: dict[str, str] = {}
    for line in lines:
        field_name, colon, value = line.partition(b":")
        if not colon or not field_name or field_name.translate(None, TOKEN_CHARS) or b"\r" in value:
            return None
        if len(line) > _MAX_HEADER_LINE:
            return None
        headers[field_name.decode("latin-1").lower()] = value.lstrip(b" ").decode("latin-1")
    disposition = _PLAIN_DISPOSITION.fullmatch(headers.get("content-disposition", ""))
    if disposition is None:
        return None
    name = disposition.group(1).encode("latin-1").decode("utf-8", "replace")
    return name, headers, headers_end + 4


def _split_general(body: bytes, boundary: bytes) -> list[Part]:
    """Every part, by python-multipart's streaming parser (any valid framing; errors for invalid ones)."""
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
        max_header_count=MAX_PART_HEADERS,
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}", field="multipart") from None
    if not state["ended"]:
        raise InvalidInput("the multipart body ends before its closing boundary", field="multipart")
    return parts
