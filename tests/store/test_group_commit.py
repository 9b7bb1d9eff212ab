"""Group commit (``Database.write_grouped``): works handed in together share a transaction on SQLite, each returns
only once the commit holding it is done (its row visible to any other connection), and a failing work is rolled
back alone, its commit callbacks never run. On PostgreSQL the same calls commit each work on its own."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from tracetune.store.schema import store_flags

WORKERS = 12


def flag_writer(name: str, pause: float = 0.0, fail: bool = False) -> Any:
    def work(conn: Connection) -> str:
        conn.execute(insert(store_flags).values(name=name, value="1", updated_at=datetime.now(UTC)))
        time.sleep(pause)  # holds the transaction: the others arrive meanwhile and wait for the next group
        if fail:
            raise ValueError(f"{name} refused")
        return name

    return work


def stored(store: Any) -> set[str]:
    with store.db.read() as conn:
        return set(conn.execute(select(store_flags.c.name).where(store_flags.c.name.like("w-%"))).scalars())


def test_concurrent_works_share_commits_and_each_is_durable_when_it_returns(store: Any) -> None:
    start = threading.Barrier(WORKERS)
    seen_after_return: dict[str, bool] = {}
    errors: dict[str, BaseException] = {}
    called: list[str] = []

    def run(i: int) -> None:
        name = f"w-{i:02d}"
        work = flag_writer(name, pause=0.02, fail=i == 5)

        def with_callback(conn: Connection) -> str:
            conn.info.setdefault("after_commit", []).append(lambda: called.append(name))
            return work(conn)  # type: ignore[no-any-return]

        start.wait()
        try:
            assert store.db.write_grouped(with_callback) == name
        except ValueError as exc:
            errors[name] = exc
            return
        seen_after_return[name] = name in stored(store)  # another connection sees it as soon as the call returns

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WORKERS)]
    commits_before = store.db.group_commits
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    expected = {f"w-{i:02d}" for i in range(WORKERS)} - {"w-05"}
    assert set(errors) == {"w-05"} and "w-05 refused" in str(errors["w-05"])
    assert stored(store) == expected  # the failing work alone was rolled back
    assert seen_after_return == dict.fromkeys(expected, True)
    assert sorted(called) == sorted(expected)  # the failed work's commit callback never ran
    if store.db.dialect == "sqlite":
        assert 0 < store.db.group_commits - commits_before < WORKERS - 1  # some works shared a commit


def test_a_database_error_in_a_work_rolls_back_that_work_alone(store: Any) -> None:
    store.db.write_grouped(flag_writer("w-dup"))

    def two(conn: Connection) -> None:  # a row, then a duplicate key: the whole work goes, the earlier row too
        flag_writer("w-other")(conn)
        flag_writer("w-dup")(conn)

    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.db.write_grouped(two)
    assert stored(store) == {"w-dup"}
    assert store.db.write_grouped(flag_writer("w-after")) == "w-after"  # the store goes on writing
    assert stored(store) == {"w-dup", "w-after"}
