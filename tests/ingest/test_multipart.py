"""Pure functions body → parts (``tracetune.ingest.multipart``): real raw SDK bodies, broken framing,
Content-Encoding with a size cap."""

from __future__ import annotations

import gzip
import io
import json

import pytest
import zstandard

from tests.fixtures import FIXTURES, load, multipart_body
from tracetune.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from tracetune.ingest.encoding import decode_body
from tracetune.ingest.multipart import boundary_of, split_parts

RAW = load("ls_raw.json")["requests"]


def raw(n: int) -> tuple[bytes, str]:
    return (FIXTURES / f"ls_raw_{n}.bin").read_bytes(), RAW[n - 1]["headers"]["content-type"]


@pytest.mark.parametrize("n", [1, 2])
def test_real_raw_bodies_split_into_their_parts(n: int) -> None:
    body, ctype = raw(n)
    assert len(body) == int(RAW[n - 1]["headers"]["content-length"])
    parts = split_parts(body, ctype)
    assert [p.name for p in parts] == RAW[n - 1]["parts"]
    for part in parts:
        assert part.content_type == "application/json"
        assert int(part.headers["content-length"]) == len(part.data)  # nothing lost or added at the edges
        json.loads(part.data)
    first = json.loads(parts[0].data)
    assert parts[0].name == f"post.{first['id']}"
    assert first["session_name"] == "tracetune-capture"


def test_raw_body_parts_hold_the_captured_json() -> None:
    body, ctype = raw(1)
    parts = {p.name: json.loads(p.data) for p in split_parts(body, ctype)}
    root = "01a1fd4f-b571-75b2-9769-d21600a1ebf5"
    assert parts[f"post.{root}"]["name"] == "RunnableSequence"
    assert parts[f"post.{root}.inputs"] == {"city": "Paris"}
    assert parts[f"post.{root}.outputs"] == {}


def test_binary_part_survives_bytes_that_look_like_framing() -> None:
    data = b"\r\n--\r\n\r\n" + bytes(range(256)) + b"\r\n--y--\r\n"  # not the boundary "x"
    body, ctype = multipart_body([("attachment.a.b", data), ("post.x", {"k": "v"})], boundary="x")
    parts = split_parts(body, ctype)
    assert [(p.name, p.data) for p in parts] == [("attachment.a.b", data), ("post.x", b'{"k": "v"}')]
    assert parts[0].content_type == "application/octet-stream"


def test_empty_part_and_no_parts() -> None:
    body, ctype = multipart_body([("post.x", b"")])
    assert split_parts(body, ctype)[0].data == b""
    assert split_parts(b"--b--\r\n", "multipart/form-data; boundary=b") == []


def test_quoted_boundary_and_parameters_in_any_case() -> None:
    body, _ = multipart_body([("p", b"1")], boundary="abc")
    assert [p.data for p in split_parts(body, 'Multipart/Form-Data; charset=utf-8; boundary="abc"')] == [b"1"]


@pytest.mark.parametrize("cut", [-3, -20, 200, 1000])
def test_missing_closing_boundary(cut: int) -> None:
    body, ctype = raw(1)
    with pytest.raises(InvalidInput) as exc:
        split_parts(body[:cut], ctype)
    assert exc.value.field == "multipart"
    assert "closing boundary" in exc.value.message


def test_wrong_boundary_is_malformed() -> None:
    body, _ = raw(1)
    with pytest.raises(InvalidInput) as exc:
        split_parts(body, "multipart/form-data; boundary=ffffffffffffffffffffffffffffffff")
    assert exc.value.field == "multipart"


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("multipart/form-data", "no boundary"),
        ("multipart/form-data; boundary=", "no boundary"),
        ("application/json", "expected Content-Type multipart/form-data"),
        ("multipart/mixed; boundary=x", "expected Content-Type multipart/form-data"),
        (None, "expected Content-Type multipart/form-data"),
        ("", "expected Content-Type multipart/form-data"),
    ],
)
def test_content_type_without_a_usable_boundary(content_type: str | None, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        boundary_of(content_type)
    assert exc.value.field == "Content-Type"
    assert message in exc.value.message


def test_part_without_a_name() -> None:
    body = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--\r\n"
    with pytest.raises(InvalidInput) as exc:
        split_parts(body, "multipart/form-data; boundary=b")
    assert "part #1 has no name" in exc.value.message


def test_too_many_part_headers() -> None:
    headers = b"".join(b"X-%d: y\r\n" % i for i in range(40))
    body = b"--b\r\n" + headers + b'Content-Disposition: form-data; name="p"\r\n\r\n{}\r\n--b--\r\n'
    with pytest.raises(InvalidInput) as exc:
        split_parts(body, "multipart/form-data; boundary=b")
    assert exc.value.field == "multipart"


# -- decode_body ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_identity_is_passed_through(encoding: str | None) -> None:
    assert decode_body(b"abc", encoding, 3) == b"abc"


def _zstd_stream(data: bytes) -> bytes:
    """A zstd frame written as a stream (no content size in the header), as the SDK writes it."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        for i in range(0, len(data), 1000):
            writer.write(data[i : i + 1000])
    return out.getvalue()


@pytest.mark.parametrize("pack", [zstandard.ZstdCompressor().compress, _zstd_stream])
def test_zstd_round_trip_of_a_real_body(pack) -> None:
    body, ctype = raw(2)
    decoded = decode_body(pack(body), "zstd", len(body))  # exactly at the limit is fine
    assert decoded == body
    assert len(split_parts(decoded, ctype)) == len(RAW[1]["parts"])


@pytest.mark.parametrize("pack", [zstandard.ZstdCompressor().compress, _zstd_stream])
def test_zstd_over_the_limit(pack) -> None:
    with pytest.raises(PayloadTooLarge) as exc:
        decode_body(pack(b"a" * 10_001), "ZSTD", 10_000)
    assert "10000" in exc.value.message
    assert exc.value.status_code == 413


@pytest.mark.parametrize("data", [b"not zstd at all", b""])
def test_invalid_zstd(data: bytes) -> None:
    with pytest.raises(InvalidInput) as exc:
        decode_body(data, "zstd", 1000)
    assert exc.value.field == "Content-Encoding"
    assert "not valid zstd" in exc.value.message


@pytest.mark.parametrize("pack", [zstandard.ZstdCompressor(write_checksum=True).compress, _zstd_stream])
def test_a_truncated_zstd_stream_says_so(pack) -> None:
    body, _ = raw(2)
    packed = pack(body)
    for cut in (3, 5, 12, len(packed) // 2, len(packed) - 1):
        with pytest.raises(InvalidInput) as exc:
            decode_body(packed[:cut], "zstd", len(body))
        assert exc.value.field == "Content-Encoding"
        assert f"the zstd stream is truncated: the {cut}-byte body ends inside" in exc.value.message


def test_concatenated_zstd_frames_decode_whole() -> None:
    one, two = b"a" * 5000, b"b" * 7000
    packed = zstandard.ZstdCompressor().compress(one) + _zstd_stream(two)
    assert decode_body(packed, "zstd", 12_000) == one + two


def test_gzip_round_trip_and_limit() -> None:
    body, _ = raw(1)
    assert decode_body(gzip.compress(body), "gzip", len(body)) == body
    with pytest.raises(PayloadTooLarge):
        decode_body(gzip.compress(body), "gzip", len(body) - 1)


@pytest.mark.parametrize(
    ("data", "needle"),
    [(b"not gzip", "not valid gzip"), (gzip.compress(b"x" * 1000, mtime=0)[:20], "gzip stream is truncated")],
)
def test_invalid_gzip(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        decode_body(data, "gzip", 10_000)
    assert exc.value.field == "Content-Encoding"
    assert needle in exc.value.message


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd, gzip"])
def test_unsupported_encoding(encoding: str) -> None:
    with pytest.raises(UnsupportedMediaType) as exc:
        decode_body(b"x", encoding, 10)
    assert exc.value.field == "Content-Encoding"
    assert repr(encoding) in exc.value.message
