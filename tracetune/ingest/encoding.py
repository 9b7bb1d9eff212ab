"""Request bodies with a ``Content-Encoding`` (zstd, gzip): decoded with a size cap, every failure named.

zstd's stream decoder returns what it could decode from a cut-short stream without an error, so a truncated
body would look like a smaller, complete one (and then fail later, misleadingly, e.g. as a multipart body that
"ends before its closing boundary"). ``_check_zstd_frames`` walks the frames' block headers first (a few
arithmetic steps per 128 KiB block, no decompression) and says where the stream ends early.
"""

from __future__ import annotations

import io
import threading

import zstandard

from tracetune.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

ENCODINGS = ("zstd", "gzip")
_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50
_local = threading.local()  # a decompression context per thread, made once: making one costs more than a small body


def _zstd() -> zstandard.ZstdDecompressor:
    decompressor = getattr(_local, "zstd", None)
    if decompressor is None:
        decompressor = _local.zstd = zstandard.ZstdDecompressor()
    return decompressor


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body with its ``Content-Encoding`` undone (zstd, gzip or none), never longer than ``max_bytes``.
    415 for another encoding (naming it), 400 for a body that is not what its encoding says, 413 when the
    decoded body would be over ``max_bytes``."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding == "zstd":
        _check_zstd_frames(body)
        try:
            with _zstd().stream_reader(io.BytesIO(body), read_across_frames=True) as reader:
                data = reader.read(max_bytes + 1)
        except zstandard.ZstdError as exc:
            raise InvalidInput(f"the body is not valid zstd: {exc}", field="Content-Encoding") from None
    elif encoding == "gzip":
        import gzip
        import zlib

        try:
            with gzip.GzipFile(fileobj=io.BytesIO(body)) as gz:
                data = gz.read(max_bytes + 1)
        except EOFError:
            raise InvalidInput(
                f"the gzip stream is truncated: the {len(body)}-byte body ends before the stream does",
                field="Content-Encoding",
            ) from None
        except (OSError, zlib.error) as exc:
            raise InvalidInput(f"the body is not valid gzip: {exc}", field="Content-Encoding") from None
    else:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {content_encoding!r}: send the body as zstd, gzip or uncompressed",
            field="Content-Encoding",
        )
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the decompressed body is over the limit of {max_bytes} bytes", field="body")
    return data


def _check_zstd_frames(body: bytes) -> None:
    """400 naming where a zstd body ends early: inside a frame's header, a block, or its checksum."""
    if not body:
        raise InvalidInput("the body is not valid zstd: it is empty", field="Content-Encoding")
    pos, frame, size = 0, 0, len(body)

    def truncated(where: str) -> InvalidInput:
        return InvalidInput(
            f"the zstd stream is truncated: the {size}-byte body ends inside {where} of frame {frame + 1}",
            field="Content-Encoding",
        )

    while pos < size:
        if size - pos < 4:
            raise truncated("the magic number")
        magic = int.from_bytes(body[pos : pos + 4], "little")
        if magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
            if size - pos < 8:
                raise truncated("the header")
            pos += 8 + int.from_bytes(body[pos + 4 : pos + 8], "little")
            if pos > size:
                raise truncated("a skippable frame")
        elif magic != _ZSTD_MAGIC:
            which = "it does not start with" if frame == 0 else f"frame {frame + 1} is not"
            raise InvalidInput(f"the body is not valid zstd: {which} a zstd frame", field="Content-Encoding")
        else:
            if size - pos < 5:
                raise truncated("the header")
            has_checksum = body[pos + 4] & 0x04  # Frame_Header_Descriptor: Content_Checksum_flag
            try:
                pos += zstandard.frame_header_size(body[pos : pos + 18])
            except zstandard.ZstdError:
                raise truncated("the header") from None
            if pos > size:
                raise truncated("the header")
            while True:  # blocks: a 3-byte header (last flag, type, size), then the block's bytes
                if size - pos < 3:
                    raise truncated("a block header")
                header = int.from_bytes(body[pos : pos + 3], "little")
                kind, length = (header >> 1) & 3, header >> 3
                pos += 3 + (1 if kind == 1 else length)  # an RLE block holds one byte
                if pos > size:
                    raise truncated("a block")
                if header & 1:
                    break
            if has_checksum:
                pos += 4
                if pos > size:
                    raise truncated("the checksum")
        frame += 1
