"""The automation runner: a thread of ``tracetune serve`` (with ``run_automations``) that fires automations when their
trigger says so and runs their firings, one at a time.

Every ``automation_poll_s`` seconds: each active automation whose last firing is over is checked — enough new
matching runs (``every_runs``), or its interval passed with at least one new run (``every_s``) — and a firing is
queued (the store allows one queued-or-running firing per automation, whichever replica asks). Then the oldest
queued firing, or one whose runner stopped heartbeating (a server killed mid-firing), is claimed and run from its
recorded step (:mod:`tracetune.loop.firing`), a heartbeat thread holding it meanwhile. A failed step is retried
(the firing requeued) while the rule's ``max_attempts`` allow, then the firing is recorded ``failed`` with the
reason. Stopping the server mid-firing leaves the firing held by nobody: the next runner resumes it once the
hold is stale (``job_stale_after_s``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from tracetune.errors import NotFound
from tracetune.loop.firing import Firing, FiringFailed, LostHold
from tracetune.loop.rules import Rule
from tracetune.query.selection import count_untaken_runs
from tracetune.store.automations import ACTIVE
from tracetune.store.sqlutil import utcnow

if TYPE_CHECKING:
    from tracetune.config import Settings
    from tracetune.store import Store
    from tracetune.store.rows import AutomationRow, FiringRow

log = logging.getLogger("tracetune.loop")

HEARTBEAT_S = 1.0


def due_trigger(store: Store, automation: AutomationRow) -> str | None:
    """Why ``automation`` should fire now (the firing's ``trigger``), or None."""
    rule = Rule.model_validate(automation["rule"])
    last = store.automations.last_firing(automation["id"])
    if last is not None and last["status"] in ACTIVE:
        return None
    every_s = rule.trigger.every_s
    if every_s is not None and last is not None and utcnow() < last["created_at"] + timedelta(seconds=every_s):
        return None
    try:
        new = count_untaken_runs(store, automation["workspace_id"], automation["id"], rule.selection())
    except NotFound:  # the project does not exist yet: nothing traced
        return None
    if rule.trigger.every_runs is not None:
        return f"{new} new runs" if new >= rule.trigger.every_runs else None
    return f"schedule ({new} new runs)" if new else None


class AutomationRunner:
    def __init__(
        self, store: Store, settings: Settings, *, worker_id: str | None = None, internal_key: str | None = None
    ) -> None:
        """``internal_key``: the server's key for its own calls (evaluations on its own /v1, in the firing's
        workspace, whatever the auth mode); without it, the endpoint's key is ``grader_api_key``."""
        self.store, self.settings, self.internal_key = store, settings, internal_key
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:automations"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop in a daemon thread (again, after ``stop``)."""
        self._stop.clear()
        self._wake.clear()
        self._thread = threading.Thread(target=self._loop, name="tracetune-automations", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.tick() and not self._stop.is_set():
                    pass
            except Exception:  # the loop must survive a bad row or a database hiccup; the next tick retries
                log.exception("automation runner tick failed")
            self._wake.wait(self.settings.automation_poll_s)
            self._wake.clear()

    def tick(self) -> bool:
        """Queue the firings that are due, then run one firing; whether one ran."""
        for automation in self.store.automations.list(active_only=True):
            trigger = due_trigger(self.store, automation)
            if trigger is not None and self.store.automations.add_firing(automation, trigger) is not None:
                log.info("automation %s fires: %s", automation["name"], trigger)
        firing = self.store.automations.claim(self.worker_id, stale_after=self.settings.job_stale_after_s)
        if firing is None:
            return False
        self.run_firing(firing)
        return True

    def run_firing(self, firing: FiringRow) -> None:
        """Run a claimed firing to its end (or until its hold is lost), retrying a failed step per the rule."""
        automation = self.store.automations.by_id(firing["automation_id"])
        work = Firing(self.store, self.settings, automation, firing, self.worker_id, self.internal_key)
        beat = threading.Thread(target=self._heartbeat, args=(work,), daemon=True)
        beat.start()
        try:
            work.run()
        except LostHold:
            log.warning("automation %s firing #%s: taken over by another runner", automation["name"], firing["number"])
        except Exception as exc:  # FiringFailed: a step's reason; anything else: a crash, recorded as such
            self._failed(work, exc)
        finally:
            work.lost.set()  # stops the heartbeat thread
            beat.join(timeout=5)

    def _failed(self, work: Firing, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, FiringFailed) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, FiringFailed):
            log.exception("automation %s firing #%s crashed", work.rule.name, work.firing["number"])
        attempts = work.firing["attempts"] + 1
        step = work.firing["step"]
        try:
            if attempts < work.rule.max_attempts:
                work.save(f"attempt {attempts} failed: {reason}; trying again", attempts=attempts)
                self.store.automations.requeue(work.firing["id"], self.worker_id)
            else:
                work.save(f"failed: {reason}", attempts=attempts, status="failed", reason=f"{step}: {reason}")
        except LostHold:
            pass

    def _heartbeat(self, work: Firing) -> None:
        while not work.lost.wait(HEARTBEAT_S):
            if not work.heartbeat():
                work.lost.set()
