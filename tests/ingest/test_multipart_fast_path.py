"""The fast splitter (``_split_plain``) against python-multipart (``_split_general``): whenever the fast path
answers, it gives exactly the parts python-multipart gives; whenever python-multipart refuses a body, the fast
path steps aside (so the error message is python-multipart's)."""

from __future__ import annotations

import random

import pytest

from tests.fixtures import FIXTURES, load, multipart_body
from tracetune.errors import InvalidInput
from tracetune.ingest.multipart import _split_general, _split_plain, boundary_of, split_parts

B = b"5a5e1d8f0c2b4e6f8a9b0c1d2e3f4a5b"


def general(body: bytes, boundary: bytes = B) -> list[tuple] | str:
    try:
        return [(p.name, p.content_type, p.data, p.headers) for p in _split_general(body, boundary)]
    except InvalidInput as exc:
        return f"error: {exc.message}"


def fast(body: bytes, boundary: bytes = B) -> list[tuple] | None:
    parts = _split_plain(body, boundary)
    return None if parts is None else [(p.name, p.content_type, p.data, p.headers) for p in parts]


def agree(body: bytes, boundary: bytes = B) -> bool:
    """True when the fast path answered (and matched); False when it stepped aside. Fails on a mismatch."""
    quick, slow = fast(body, boundary), general(body, boundary)
    if quick is None:
        return False
    assert quick == slow, (body[:300], quick, slow)
    return True


def sdk_body(parts: list[tuple[str, bytes]], boundary: bytes = B) -> bytes:
    out = bytearray()
    for name, data in parts:
        out += b"--" + boundary + b"\r\n"
        out += f'Content-Disposition: form-data; name="{name}"\r\n'.encode()
        out += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
        out += data + b"\r\n"
    return bytes(out + b"--" + boundary + b"--\r\n")


@pytest.mark.parametrize("n", [1, 2])
def test_captured_sdk_bodies_take_the_fast_path(n: int) -> None:
    body = (FIXTURES / f"ls_raw_{n}.bin").read_bytes()
    boundary = boundary_of(load("ls_raw.json")["requests"][n - 1]["headers"]["content-type"])
    assert agree(body, boundary)


@pytest.mark.parametrize(
    "body",
    [
        sdk_body([("post.a", b'{"x": 1}'), ("post.a.inputs", b"{}")]),
        sdk_body([("post.a", b"")]),
        sdk_body([("n\xe9".encode("latin-1").decode("latin-1"), b"1")]),  # non-ASCII name bytes
        sdk_body([("post.a", b"{}")]) + b"epilogue that python-multipart ignores",
        sdk_body([("post.a", b"{}")])[:-2],  # closing boundary without CRLF
        multipart_body([("attachment.a.b", b"\x00\xff raw")], boundary=B.decode())[0],
        # other header layouts that are still plain
        b"--" + B + b'\r\ncontent-disposition: form-data; name="p"\r\n\r\nv\r\n--' + B + b"--",
        b"--" + B + b'\r\nContent-Disposition:   form-data; name="p"\r\nX-A: 1\r\nX-A: 2\r\n\r\nv\r\n--' + B + b"--",
        b"--" + B + b'\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\nv\r\n--' + B + b"--",
    ],
)
def test_plain_bodies_are_split_identically(body: bytes) -> None:
    assert agree(body)


@pytest.mark.parametrize(
    "body",
    [
        b"\r\n" + sdk_body([("p", b"1")]),  # preamble CRLF
        sdk_body([("p", b"1")])[:-10],  # truncated
        sdk_body([("p", b"a\r\n--" + B + b"x b")]),  # a boundary-like line inside the data
        sdk_body([("p", b"1")]).replace(b"1\r\n--" + B + b"--", b"1\r\n--" + B + b" \r\n--" + B + b"--"),  # padding
        b"--" + B + b'\r\nContent-Disposition: form-data; name="a\\"b"\r\n\r\nv\r\n--' + B + b"--",  # quoted-pair
        b"--" + B + b'\r\nContent-Disposition: form-data; NAME="p"\r\n\r\nv\r\n--' + B + b"--",
        b"--" + B + b"\r\nContent-Type: application/json\r\n\r\n{}\r\n--" + B + b"--",  # no name
        b"--" + B + b"\r\n\r\n{}\r\n--" + B + b"--",  # no headers at all
        b"--" + B + b'\r\nBad Header: x\r\nContent-Disposition: form-data; name="p"\r\n\r\nv\r\n--' + B + b"--",
        b"--" + B + b'\r\nContent-Disposition: form-data; name="' + b"n" * 5000 + b'"\r\n\r\nv\r\n--' + B + b"--",
        b"--"
        + B
        + b"\r\n"
        + b"X-A: 1\r\n" * 40
        + b'Content-Disposition: form-data; name="p"\r\n\r\nv\r\n--'
        + B
        + b"--",
        b"--" + B + b"--\r\n",  # no parts
    ],
)
def test_unusual_bodies_go_to_python_multipart(body: bytes) -> None:
    assert fast(body) is None
    try:  # the public function answers what python-multipart answers: the same parts, or the same error
        public: list[tuple] | str = [
            (p.name, p.content_type, p.data, p.headers)
            for p in split_parts(body, f"multipart/form-data; boundary={B.decode()}")
        ]
    except InvalidInput as exc:
        public = f"error: {exc.message}"
    assert public == general(body)


def test_public_split_falls_back_with_python_multipart_errors() -> None:
    truncated = sdk_body([("p", b"1")])[:-10]
    with pytest.raises(InvalidInput) as exc:
        split_parts(truncated, f"multipart/form-data; boundary={B.decode()}")
    assert exc.value.field == "multipart"
    assert "closing boundary" in exc.value.message


def test_mutated_sdk_bodies_never_disagree() -> None:
    """Random single-byte edits of a real SDK body: the fast path either steps aside or matches exactly, and
    it never accepts a body python-multipart refuses."""
    rng = random.Random(20261121)
    base = sdk_body([(f"post.{i}", b'{"k": "v\\r\\n--", "n": %d}' % i) for i in range(4)] + [("patch.9", b"[]")])
    alphabet = b'\r\n-"\\;: =aZ0' + B[:3]
    answered = 0
    for _ in range(4000):
        body = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(body))
            op = rng.random()
            if op < 0.4:
                body[pos] = rng.choice(alphabet)
            elif op < 0.7:
                del body[pos]
            else:
                body.insert(pos, rng.choice(alphabet))
        answered += agree(bytes(body))
    assert answered > 400  # plenty of edits (inside data, names, lengths) stay on the fast path
