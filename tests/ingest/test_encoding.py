"""Request bodies' Content-Encoding: the zstd decompression context each thread keeps is fit for the next body
after any failure of the one before."""

from __future__ import annotations

import threading

import pytest
import zstandard

from tracetune.errors import InvalidInput, PayloadTooLarge
from tracetune.ingest.encoding import decode_body

PAYLOAD = b"".join(b'{"run": %d, "text": "hello world %d"}\n' % (i, i * 7) for i in range(3000))


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def test_a_corrupt_or_oversized_body_leaves_the_thread_able_to_decode_the_next() -> None:
    good = _zstd(PAYLOAD)
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0xFF
    with pytest.raises(InvalidInput, match="not valid zstd"):
        decode_body(bytes(corrupt), "zstd", 1 << 22)
    assert decode_body(good, "zstd", 1 << 22) == PAYLOAD
    with pytest.raises(PayloadTooLarge):
        decode_body(good, "zstd", 1000)  # stops reading mid-stream
    assert decode_body(good, "zstd", 1 << 22) == PAYLOAD
    with pytest.raises(InvalidInput, match="truncated"):
        decode_body(good[:-9], "zstd", 1 << 22)
    assert decode_body(good, "zstd", 1 << 22) == PAYLOAD


def test_threads_decode_at_once_each_with_its_own_context() -> None:
    bodies = [PAYLOAD[: 20_000 * (i + 1)] for i in range(6)]
    wrong: list[int] = []

    def work(i: int) -> None:
        for _ in range(30):
            if decode_body(_zstd(bodies[i]), "zstd", 1 << 22) != bodies[i]:
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
