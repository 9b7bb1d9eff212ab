"""One firing of an automation, step by step; each step records what it made before the next starts, so a firing
taken over after a crash resumes at its recorded step without making anything twice.

1. ``dataset``: the matching runs no earlier firing took are taken (sampled by the rule's rate, deterministically
   by run id) and recorded with the firing in one commit; they are exported (deduplicated, corrections applied)
   as the next version of the dataset ``automation-<name>``, whose selection names the firing — a resumed firing
   finds that version instead of writing another.
2. ``train``: a fine-tuning job on that version, from the base model or from the alias's current model
   (``start_from``), with the firing's id in its metadata — a resumed firing finds that job instead of creating
   another — then waits for it (the job runner trains; a killed training process resumes from its checkpoint).
3. ``evaluate``: the evaluation dataset's conversations are replayed on the candidate and on the current model
   (what the alias names now; the base model before the first promotion) through the OpenAI-compatible endpoint
   of :func:`tracetune.train.model_graders.endpoint_from_settings` (this server's own ``/v1`` by default).
4. ``decide``: the gate over both models' metrics; when it passes the alias moves to the candidate (a new alias
   version whose note names the firing — found again on resume). The firing ends ``succeeded`` with its
   decision (``promoted`` / ``refused``) and the gate's checks as the reason.

A step that fails raises :class:`FiringFailed`; the runner retries the firing from that step while the rule's
``max_attempts`` allow, then records it ``failed`` with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tracetune.convert.dataset_builder import ExportOptions, Selection
from tracetune.convert.examples import iter_dataset_records
from tracetune.convert.export import export_dataset
from tracetune.errors import NotFound, TracetuneError
from tracetune.evaluate.experiments import record_experiments
from tracetune.evaluate.gates import parse_gate
from tracetune.evaluate.replay import evaluate
from tracetune.loop.rules import Rule
from tracetune.query.selection import untaken_run_ids
from tracetune.store.workspaces import Workspace
from tracetune.train.jobs import create_job_from_dataset
from tracetune.train.model_graders import ModelEndpoint, endpoint_from_settings, own_url

if TYPE_CHECKING:
    from tracetune.config import Settings
    from tracetune.store import Store
    from tracetune.store.rows import AutomationRow, FiringRow

log = logging.getLogger("tracetune.loop")

STEPS = ("dataset", "train", "evaluate", "decide")
JOB_POLL_S = 1.0
EVAL_CONCURRENCY = 16  # requests in flight: the engine batches up to 16 rows


class FiringFailed(Exception):
    """A step could not finish: the reason a user reads."""


class LostHold(Exception):
    """Another runner holds the firing now (this one stalled): stop without writing."""


def sampled(run_id: uuid.UUID, automation_id: uuid.UUID, rate: float) -> bool:
    """Whether the rule's sampling keeps ``run_id``: a hash of both ids, so a resumed firing decides the same."""
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(run_id.bytes + automation_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 < rate


def model_roles(firing: FiringRow, base_model: str) -> dict[str, str]:
    """Each model a firing evaluated, by its role: ``candidate``, ``current``, ``base`` (``current (base)`` while
    the alias still names the base model), in that order."""
    roles: dict[str, str] = {}
    for model, role in ((firing["candidate_model"], "candidate"), (firing["current_model"], "current"),
                        (base_model, "base")):  # fmt: skip
        if model and model in roles:
            roles[model] += f" ({role})"
        elif model:
            roles[model] = role
    return roles


def alias_note(firing: FiringRow, rule: Rule) -> str:
    return f"automation {rule.name} firing #{firing['number']} ({firing['id']})"


@dataclass
class Firing:
    store: Store
    settings: Settings
    automation: AutomationRow
    firing: FiringRow
    worker_id: str
    internal_key: str | None = None

    def __post_init__(self) -> None:
        self.rule = Rule.model_validate(self.automation["rule"])
        ws_id = self.automation["workspace_id"]
        self.ws = self.store.workspaces.by_id(ws_id) or Workspace(ws_id, "default")
        self.lost = threading.Event()

    # -- bookkeeping ------------------------------------------------------------------------------------------------

    def save(self, message: str | None = None, **values: Any) -> None:
        """Record ``values`` (and a log line for the current step); :class:`LostHold` when no longer held."""
        logged = {"step": self.firing["step"], "message": message} if message else None
        if not self.store.automations.update(self.firing["id"], self.worker_id, log=logged, **values):
            raise LostHold()
        self.firing = self.store.automations.firing_by_id(self.firing["id"])
        if message:
            log.info("automation %s #%s: %s", self.rule.name, self.firing["number"], message)

    def heartbeat(self) -> bool:
        return self.store.automations.update(self.firing["id"], self.worker_id)

    # -- the steps --------------------------------------------------------------------------------------------------

    def run(self) -> None:
        while self.firing["step"] in STEPS:
            getattr(self, f"_{self.firing['step']}")()
            if self.lost.is_set() and self.firing["status"] == "running":
                raise LostHold()

    def _dataset(self) -> None:
        firing_id = self.firing["id"]
        taken, left_out = self.store.automations.runs_taken(firing_id)
        if taken + left_out == 0:
            ids = untaken_run_ids(self.store, self.ws.id, self.automation["id"], self.rule.selection())
            if not ids:
                raise FiringFailed("no new runs match the rule")
            kept = {i for i in ids if sampled(i, self.automation["id"], self.rule.sample_rate)}
            keep, drop = [i for i in ids if i in kept], [i for i in ids if i not in kept]
            if not keep:
                raise FiringFailed(f"the sampling rate {self.rule.sample_rate} left out all {len(ids)} new runs")
            self.save(f"took {len(keep)} new runs ({len(drop)} left out by sampling)", take=(keep, drop),
                      runs_selected=len(keep))  # fmt: skip
        version = self._written_version()
        if version is None:
            options = ExportOptions(
                format="dpo" if self.rule.method == "dpo" else "openai", dedupe=self.rule.dedupe,
                use_corrections=self.rule.use_corrections, model=self.rule.base_model, name=self.rule.dataset_name,
            )  # fmt: skip
            selection = Selection(**self.rule.selection(), firing_id=str(firing_id))
            version = export_dataset(self.store, self.ws.id, selection, options, home=self.settings.home).dataset
            assert version is not None
        if not version["train_count"]:
            skipped = version["summary"].get("skipped") or {}
            raise FiringFailed(f"the new runs gave no training records (skipped: {skipped or 'none'})")
        self.save(
            f"dataset {version['name']} v{version['version']}: {version['train_count']} records",
            dataset_version_id=version["id"], step="train",
        )  # fmt: skip

    def _written_version(self) -> dict[str, Any] | None:
        for version in self.store.datasets.list(self.ws.id, name=self.rule.dataset_name, limit=1000):
            if (version["selection"] or {}).get("firing_id") == str(self.firing["id"]):
                return version
        return None

    def _train(self) -> None:
        job = self._job()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            if not self.heartbeat():
                raise LostHold()
            time.sleep(JOB_POLL_S)
            job = self.store.jobs.row(job["id"])
        if job["status"] != "succeeded":
            error = job.get("error") or {}
            self.save(job_id=None)  # a retry makes a new job
            raise FiringFailed(f"job {job['id']} {job['status']}: {error.get('message') or 'no reason given'}")
        self.save(f"job {job['id']} made {job['fine_tuned_model']}", candidate_model=job["fine_tuned_model"],
                  step="evaluate")  # fmt: skip

    def _job(self) -> Any:
        if self.firing["job_id"]:
            return self.store.jobs.row(self.firing["job_id"])
        mine = [
            j
            for j in self.store.jobs.list(self.ws.id, limit=1000, metadata={"firing_id": str(self.firing["id"])})[0]
            if j["status"] not in ("failed", "cancelled")
        ]
        if mine:
            job = mine[0]
        else:
            start = self._current() if self.rule.start_from == "current" else self.rule.base_model
            assert self.firing["dataset_version_id"] is not None
            request = self.rule.job_request(start, str(self.firing["id"]))
            try:
                job = create_job_from_dataset(
                    self.store, self.settings, self.ws, self.firing["dataset_version_id"], request
                )
            except TracetuneError as exc:
                raise FiringFailed(f"the fine-tuning job was refused: {exc}") from None
        self.save(f"fine-tuning job {job['id']} from {job['model']}", job_id=job["id"])
        return job

    def _current(self) -> str:
        """What the alias names now (followed to a model), or the base model before the first promotion."""
        if self.store.aliases.get(self.ws.id, self.rule.alias) is None:
            return self.rule.base_model
        return self.store.aliases.resolve(self.ws.id, self.rule.alias)

    def _evaluate(self) -> None:
        candidate = self.firing["candidate_model"]
        assert candidate is not None
        current = self._current()
        versions = self.store.datasets.list(self.ws.id, name=self.rule.eval_dataset, limit=1)
        if not versions:
            raise FiringFailed(f"the evaluation dataset {self.rule.eval_dataset!r} no longer exists")
        rows = list(iter_dataset_records(self.store, self.ws.id, versions[0]["id"]))
        records = [(i, r["record"]) for i, r in enumerate(rows, 1)]
        if not records:
            raise FiringFailed(f"the evaluation dataset {self.rule.eval_dataset!r} holds no records")
        endpoint = endpoint_from_settings(self.settings)
        if self.settings.grader_base_url is None and self.internal_key:  # this server's own /v1, as the workspace
            endpoint = ModelEndpoint(endpoint.base_url, f"{self.internal_key}.{self.ws.id}")
        models = list(dict.fromkeys([candidate, current, self.rule.base_model]))  # the base: how far it has come
        try:
            results = evaluate(
                endpoint, models, records, max_tokens=self.rule.eval_max_tokens, concurrency=EVAL_CONCURRENCY
            )
        except Exception as exc:  # the endpoint refused, timed out, or answered nonsense
            raise FiringFailed(f"evaluation on {endpoint.base_url} failed: {exc}") from None
        results["dataset"] = {"name": versions[0]["name"], "version": versions[0]["version"]}
        kept = self._experiments(versions[0], rows, results)
        summary = results["models"][candidate]["summary"]
        self.save(
            f"evaluated {', '.join(models)} on {len(records)} examples "
            f"(candidate accuracy {summary.get('accuracy')}); {kept}",
            evaluation=results, current_model=current, step="decide",
        )  # fmt: skip

    def _experiments(self, version: dict[str, Any], rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
        """Keep the evaluation as LangSmith experiments over the evaluation dataset (one per model, through this
        server's LangSmith API, as ``tracetune eval --dataset`` does); what became of them, for the log."""
        if not self.internal_key:
            return "not kept as experiments (no server to write them to)"
        import httpx

        dataset = {"id": str(version["dataset_id"]), "modified_at": version["as_of"].isoformat()}
        examples = [(r["example_id"], r["record"]) for r in rows]
        headers = {"x-api-key": f"{self.internal_key}.{self.ws.id}"}
        try:
            with httpx.Client(base_url=own_url(self.settings), headers=headers, timeout=60) as http:
                results["experiments"] = record_experiments(http, dataset, examples, results)
        except (TracetuneError, httpx.HTTPError) as exc:
            log.warning("automation %s: the evaluation was not kept as experiments: %s", self.rule.name, exc)
            return f"not kept as experiments: {exc}"
        return "kept as experiments " + ", ".join(e["name"] for e in results["experiments"].values())

    def _decide(self) -> None:
        evaluation = self.firing["evaluation"] or {}
        candidate, current = self.firing["candidate_model"], self.firing["current_model"]
        assert candidate is not None and current is not None
        models = evaluation.get("models", {})
        decision = parse_gate(self.rule.gate).decide(models[candidate]["summary"], models[current]["summary"])
        if not decision.passed:
            self.save(f"refused: {decision.reason()}", status="succeeded", step=None, decision="refused",
                      reason=decision.reason())  # fmt: skip
            return
        note = alias_note(self.firing, self.rule)
        try:
            found = [r for r in self.store.aliases.history(self.ws.id, self.rule.alias) if r["note"] == note]
        except NotFound:
            found = []
        row = found[0] if found else self.store.aliases.set(self.ws.id, self.rule.alias, candidate, note=note)
        self.save(
            f"promoted: {self.rule.alias} → {candidate} (v{row['version']}); {decision.reason()}",
            status="succeeded", step=None, decision="promoted", reason=decision.reason(), alias_version=row["version"],
        )  # fmt: skip
