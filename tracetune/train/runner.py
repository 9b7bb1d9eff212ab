"""The job runner: claim a fine-tuning job, validate its files, run the recipe as its own process, record what
it reports, and finish the job. ``tracetune serve`` runs one in a thread (unless ``run_jobs`` is off);
``tracetune worker`` runs one as a process of its own, on this or another machine sharing the store and home.

One job at a time per runner:

1. ``validating_files``: every line of the training (and validation) file is checked (``convert.validate``);
   a bad file fails the job with ``error.code = "invalid_training_file"`` (or ``invalid_validation_file``)
   and a message listing every bad line. Good files move the job to ``queued``.
2. ``queued`` (or ``running`` under a worker that stopped heartbeating): the job goes ``running`` and
   ``python -m tracetune.train.recipe`` starts on ``$TRACETUNE_HOME/jobs/<job id>/config.json``, resuming from the
   job's last checkpoint if it has one. Its JSON-line events become job events (``metrics`` each step,
   checkpoints as checkpoint rows), its stderr goes to ``jobs/<job id>/train.log``.
3. The runner heartbeats every second. When the job was cancelled (or taken over after this worker stalled),
   the heartbeat says so and the training process is stopped (SIGTERM, then SIGKILL).
4. Exit 0: the metrics CSV becomes a ``fine-tune-results`` file, the fine-tuned model is added and the job
   ``succeeded``, in one commit. Exit 2: the recipe refused the data (``invalid_training_file``). Any other
   end (a crash, a kill, out of memory) restarts training from the last checkpoint until ``job_max_attempts``
   starts were made, then the job ``failed`` with the log's path in the message.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tracetune.capabilities import INSTALL_MODELS, missing_capabilities
from tracetune.chat.validate import validate_lines
from tracetune.errors import NotFound
from tracetune.store.blobs import blobs_from_settings
from tracetune.store.models import adapter_path
from tracetune.store.rows import JobRow, ModelRow
from tracetune.train.data import RECORD_FORMATS
from tracetune.train.hyperparams import samples_per_prompt
from tracetune.train.jobs import SUPERVISED_HYPERPARAMETERS, checkpoint_model_id, method_hyperparameters
from tracetune.train.model_graders import API_KEY_ENV, endpoint_from_settings
from tracetune.train.task_eval import METRICS

if TYPE_CHECKING:
    from tracetune.config import Settings
    from tracetune.store import Store

log = logging.getLogger("tracetune.jobs")

HEARTBEAT_S = 1.0
STOP_GRACE_S = 5.0
MAX_LINES_DETAILED = 50
FILE_ERRORS = (("training_file", "invalid_training_file"), ("validation_file", "invalid_validation_file"))
CHECKPOINT_METRICS = (
    "step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy", *METRICS.values(),
)  # fmt: skip
Observer = Callable[[str, dict[str, Any]], None]  # (job id, recipe event)


def job_dir(home: Path, job_id: str) -> Path:
    return home / "jobs" / job_id


def recovered_file(home: Path, job_id: str, field_name: str) -> Path:
    """Where a job's training / validation file is kept with the tool declarations recovered from stored runs."""
    return job_dir(home, job_id) / f"{field_name}.tools-recovered.jsonl"


@dataclass
class _Attempt:
    """What one training process reported."""

    setup: dict[str, Any] | None = None
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    last_metrics: dict[str, Any] = field(default_factory=dict)
    held: bool = True
    returncode: int | None = None


class JobRunner:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        worker_id: str | None = None,
        poll_s: float = 1.0,
        observer: Observer | None = None,
        serving: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings
        self.home = settings.home
        self.blobs = blobs_from_settings(settings)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.poll_s = poll_s
        self.observer = observer
        self.serving = serving  # inside `tracetune serve`: training leaves the engine its threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- driving --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`serve_forever` in a daemon thread (the server's way)."""
        self._thread = threading.Thread(target=self.serve_forever, name="tracetune-jobs", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the runner to stop (safe from a signal handler): a running training process is stopped and its job
        handed back, to resume from its last checkpoint."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """:meth:`request_stop`, then wait for the runner thread to end."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Look for work now (called when a job is created in this process)."""
        self._wake.set()

    def serve_forever(self) -> None:
        log.info("job runner %s started", self.worker_id)
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # a bug or a lost database must not kill the runner for good
                log.exception("job runner: unexpected error; retrying in %.0f s", self.poll_s)
                worked = False
            if not worked:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def run_once(self, job_id: str | None = None) -> bool:
        """Claim one job (``job_id`` only, when given) and take it one stage on; False when there was none."""
        job = self.store.jobs.claim(self.worker_id, stale_after=self.settings.job_stale_after_s, job_id=job_id)
        if job is None:
            return False
        if job["status"] == "validating_files":
            self._validate(job)
        else:
            self._train(job)
        return True

    def run_job(self, job_id: str) -> JobRow:
        """Run one job to its end in this thread (``tracetune train``); its final row."""
        while self.store.jobs.status(job_id) not in ("succeeded", "failed", "cancelled") and not self._stop.is_set():
            if not self.run_once(job_id):
                time.sleep(self.poll_s)
        return self.store.jobs.row(job_id)

    # -- validating_files -----------------------------------------------------------------------------------------

    def _validate(self, job: JobRow) -> None:
        for field_name, code, file_id in (
            ("training_file", "invalid_training_file", job["training_file"]),
            ("validation_file", "invalid_validation_file", job["validation_file"]),
        ):
            if file_id is None:
                continue
            problem = self._file_problem(job, file_id)
            if problem is not None:
                message = f"{'Training' if field_name == 'training_file' else 'Validation'} file {file_id} {problem}"
                self.store.jobs.transition(
                    job["id"], self.worker_id, "failed",
                    error={"code": code, "message": message, "param": field_name}, messages=[("error", message)],
                )  # fmt: skip
                return
        notes = [("info", "Files validated, moving job to queued state")]
        if job["method"]["type"] == "supervised":  # a DPO line's input declares its tools itself
            notes += [("warn", message) for message in self._recover_tools(job)]
        self.store.jobs.transition(job["id"], self.worker_id, "queued", release=True, messages=notes)

    def _recover_tools(self, job: JobRow) -> list[str]:
        """Records that call tools but declare none get the declarations of the stored runs they came from
        (:mod:`tracetune.convert.tool_recovery`), written beside the job (:func:`recovered_file`) for the training
        process to read; what was done, one message per file (none when no record needed it)."""
        from tracetune.chat.diagnose import undeclared_calls
        from tracetune.convert.tool_recovery import recover_tools

        messages = []
        for field_name, file_id in (
            ("training_file", job["training_file"]),
            ("validation_file", job["validation_file"]),
        ):
            if file_id is None:
                continue
            path = self.store.files.blob(job["workspace_id"], file_id, self.blobs)
            records = [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
            if not any(undeclared_calls(r) for r in records):
                continue
            recovery = recover_tools(self.store, job["workspace_id"], records)
            if recovery.recovered:
                target = recovered_file(self.home, job["id"], field_name)
                target.parent.mkdir(parents=True, exist_ok=True)
                scratch = target.with_name(f".{target.name}-{secrets.token_hex(4)}")
                scratch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recovery.records))
                os.replace(scratch, target)
            messages.append(f"{field_name.replace('_', ' ').capitalize()} {file_id}: {recovery.summary()}")
        return messages

    def _file_problem(self, job: JobRow, file_id: str) -> str | None:
        """None when every line of the file is a valid record of the job's method (a chat fine-tuning record; a
        preference pair for DPO), else what is wrong (every line)."""
        try:
            path = self.store.files.blob(job["workspace_id"], file_id, self.blobs)
            lines = path.read_bytes().splitlines()
        except Exception as exc:  # deleted since creation, unreadable
            return f"cannot be read: {getattr(exc, 'message', exc)}"
        report = validate_lines(lines, validator=RECORD_FORMATS[job["method"]["type"]][0])
        by_line: dict[int, list[str]] = {}
        for p in report.problems:
            if p.level == "error":
                by_line.setdefault(p.line, []).append(f"{p.field + ': ' if p.field else ''}{p.message}")
        if not by_line:
            return None if report.valid_lines else "holds no examples"
        numbers = sorted(by_line)
        detail = "; ".join(f"line {n}: {' / '.join(by_line[n])}" for n in numbers[:MAX_LINES_DETAILED])
        more = numbers[MAX_LINES_DETAILED:]
        if more:
            detail += f"; and {len(more)} more invalid lines: {', '.join(map(str, more))}"
        return f"has {len(numbers)} invalid line{'s' if len(numbers) > 1 else ''} (of {report.lines}): {detail}"

    # -- training -------------------------------------------------------------------------------------------------

    def _train(self, job: JobRow) -> None:
        jobs = self.store.jobs
        lacking = missing_capabilities().get("fine-tuning")
        if lacking:  # the training process could only die on its imports: say what to install instead
            message = f"this worker cannot fine-tune: {', '.join(lacking)} not installed; install with {INSTALL_MODELS}"
            self._fail(job, "missing_dependency", message)
            return
        try:
            self._start(job)
        except NotFound as exc:  # the fine-tuned model it starts from was deleted since the job was created
            self._fail(job, "model_not_available", f"cannot start from {job['model']}: {exc.message}", param="model")
            return
        while True:
            checkpoint = jobs.latest_checkpoint(job["id"])
            attempts = int(job["attempts"]) + 1
            if attempts > self.settings.job_max_attempts:
                self._fail(job, "training_failed", f"training stopped {attempts - 1} times; see {self._log(job)}")
                return
            if checkpoint is None:
                note = "Fine-tuning job started" if attempts == 1 else "Fine-tuning job restarted from the beginning"
            else:
                note = f"Resuming from the checkpoint at step {checkpoint['step_number']} (attempt {attempts})"
            if not jobs.transition(
                job["id"], self.worker_id, "running", messages=[("info", note)], attempts=attempts,
                started_at=job["started_at"] or int(time.time()),
            ):  # fmt: skip
                return  # cancelled meanwhile
            job = {**job, "attempts": attempts}
            outcome = self._run_process(job, self.blobs.path(checkpoint["path"]) if checkpoint else None)
            if not outcome.held:
                return  # cancelled, or taken over by another worker: nothing more to write
            if outcome.returncode == 0 and outcome.done is not None:
                self._succeed(job, outcome)
                return
            if outcome.returncode == 2 and outcome.error is not None:
                param = outcome.error.get("field") or "training_file"
                code = "invalid_validation_file" if param == "validation_file" else "invalid_training_file"
                self._fail(job, code, outcome.error.get("message") or "the training data was refused", param=param)
                return
            why = _exit_reason(outcome.returncode, outcome.error)
            if self._stop.is_set():
                jobs.transition(
                    job["id"], self.worker_id, "queued", release=True,
                    messages=[("warn", f"Worker {self.worker_id} stopped; the job resumes from its last checkpoint")],
                )  # fmt: skip
                return
            if attempts >= self.settings.job_max_attempts:
                self._fail(job, "training_failed", f"the training process {why}; see {self._log(job)}")
                return
            jobs.add_events(job["id"], [{"level": "warn", "message": f"The training process {why}; restarting it"}])

    def _run_process(self, job: JobRow, resume_from: Path | None) -> _Attempt:
        directory = job_dir(self.home, job["id"])
        directory.mkdir(parents=True, exist_ok=True)
        config_path = directory / "config.json"
        config = self._config(job, directory)
        scratch = config_path.with_name(f".config-{secrets.token_hex(4)}.json")
        scratch.write_text(json.dumps(config, indent=2), encoding="utf-8")
        os.replace(scratch, config_path)
        command = [sys.executable, "-m", "tracetune.train.recipe", str(config_path), "--die-with-parent"]
        if resume_from is not None:
            command += ["--resume-from", str(resume_from)]
        env = {**os.environ, **training_env(self.settings, self.serving), "HF_HUB_OFFLINE": "1"}
        env["TRACETUNE_HOME"] = str(self.home)
        if self.settings.grader_api_key:  # for model graders; never written to the config file
            env[API_KEY_ENV] = self.settings.grader_api_key
        outcome = _Attempt()
        with open(directory / "train.log", "ab") as log_file:
            log_file.write(f"\n== attempt {job['attempts']}: {' '.join(command)}\n".encode())
            log_file.flush()
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log_file, env=env, start_new_session=True
            )  # fmt: skip
            assert proc.stdout is not None
            lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
            reader = threading.Thread(target=_read_events, args=(proc.stdout, lines), daemon=True)
            reader.start()
            try:
                finished = False
                next_beat = 0.0
                while not finished:
                    batch: list[dict[str, Any]] = []
                    try:
                        item = lines.get(timeout=HEARTBEAT_S / 2)
                        while True:
                            if item is None:
                                finished = True
                                break
                            batch.append(item)
                            item = lines.get_nowait()
                    except queue.Empty:
                        pass
                    self._record(job, batch, outcome)
                    now = time.monotonic()
                    if now >= next_beat or finished:
                        next_beat = now + HEARTBEAT_S
                        eta = outcome.last_metrics.get("eta_s")
                        values = {"estimated_finish": int(time.time() + eta)} if isinstance(eta, int | float) else {}
                        if not self.store.jobs.heartbeat(job["id"], self.worker_id, **values):
                            outcome.held = False  # cancelled, or another worker took it over
                            _stop_process(proc)
                            break
                        if self._stop.is_set():  # this runner stops: the job is handed back (see _train)
                            _stop_process(proc)
                            break
            except BaseException:  # e.g. a checkpoint the object store refused: no orphan training process;
                _stop_process(proc)  # the job resumes from its last recorded checkpoint once found stale
                raise
            outcome.returncode = proc.wait()
            reader.join(timeout=5)
        return outcome

    def _config(self, job: JobRow, directory: Path) -> dict[str, Any]:
        hp = method_hyperparameters(job)
        base, start_adapter = self._start(job)
        extra: dict[str, Any] = {"start_adapter": start_adapter} if start_adapter else {}
        if job["method"]["type"] == "dpo":
            extra.update(method="dpo", beta=hp.get("beta", "auto"))
        if job["method"]["type"] == "reinforcement":
            extra.update(
                method="reinforcement", grader=job["method"]["reinforcement"]["grader"],
                samples_per_prompt=samples_per_prompt(hp.get("compute_multiplier", "auto")),
                grader_base_url=endpoint_from_settings(self.settings).base_url,
            )  # fmt: skip
        return {
            **extra,
            "training_file": self._data_path(job, "training_file", job["training_file"]),
            "validation_file": self._data_path(job, "validation_file", job["validation_file"])
            if job["validation_file"]
            else None,
            "output_dir": str(directory),
            "model": base,
            "home": str(self.home),
            "seed": int(job["seed"]),
            "n_epochs": hp.get("n_epochs", "auto"),
            "batch_size": hp.get("batch_size", "auto"),
            "learning_rate_multiplier": hp.get("learning_rate_multiplier", "auto"),
        }

    def _start(self, job: JobRow) -> tuple[str, str | None]:
        """The job's base model, and the adapter it starts from when it trains a fine-tuned model further."""
        if not job["model"].startswith("ft:"):
            return job["model"], None
        start = self.store.models.get(job["workspace_id"], job["model"])
        return start["base_model"], str(adapter_path(self.blobs, start))

    def _data_path(self, job: JobRow, field_name: str, file_id: str) -> str:
        """The file the training process reads: the uploaded one, or its copy with recovered tool declarations."""
        recovered = recovered_file(self.home, job["id"], field_name)
        if recovered.exists():
            return str(recovered)
        return str(self.store.files.blob(job["workspace_id"], file_id, self.blobs))

    def _record(self, job: JobRow, batch: list[dict[str, Any]], outcome: _Attempt) -> None:
        """Turn the recipe's events into job events / checkpoints / resolved hyperparameters."""
        if not batch:
            return
        events: list[dict[str, Any]] = []
        for event in batch:
            kind = event.get("type")
            if self.observer is not None:
                self.observer(job["id"], event)
            if kind == "setup":
                outcome.setup = event
                kind = job["method"]["type"]
                hp = {k: event["hyperparameters"][k] for k in SUPERVISED_HYPERPARAMETERS}
                resolved = {**hp, "beta": event["hyperparameters"]["beta"]} if kind == "dpo" else hp
                block = dict(job["method"].get(kind) or {})
                if kind == "reinforcement":
                    requested = block.get("hyperparameters") or {}
                    resolved = {
                        **hp, "compute_multiplier": event["samples_per_prompt"] / 4, "eval_interval": 1,
                        "eval_samples": 1, "reasoning_effort": requested.get("reasoning_effort", "default"),
                    }  # fmt: skip
                self.store.jobs.heartbeat(
                    job["id"], self.worker_id, hyperparameters=hp,
                    method={"type": kind, kind: {**block, "hyperparameters": resolved}},
                )  # fmt: skip
                if event.get("resumed_from_step") is None:
                    validation = ""
                    if event.get("task_eval_records"):
                        validation = (
                            f"; each epoch replays {event['task_eval_records']} validation examples and the best "
                            "epoch is kept"
                        )
                        if event.get("early_stopping_patience"):
                            validation += f", stopping after {event['early_stopping_patience']} epochs without gain"
                        if event.get("decision_weight", 1.0) != 1.0:
                            validation += (
                                f"; the argument values a call must choose weigh {event['decision_weight']:g}x in "
                                "the loss"
                            )
                    reasons = event.get("hyperparameter_reasons") or {}
                    why = "".join(f"; {name} auto: {reason}" for name, reason in reasons.items())
                    what = {
                        "dpo": f"preference pairs (DPO, beta {resolved.get('beta', 0):g})",
                        "reinforcement": f"prompts (RFT, {event.get('samples_per_prompt')} answers each, graded by "
                        f"{(block.get('grader') or {}).get('name')!r})",
                    }.get(kind, "examples")
                    events.append({"message": (
                        f"Training started: {event['n_train_examples']} {what}, {hp['n_epochs']} epochs of "
                        f"{event['steps_per_epoch']} steps (batch size {hp['batch_size']}, learning rate "
                        f"{event['hyperparameters']['learning_rate']:g}){validation}{why}"
                    ), "data": {"hyperparameter_reasons": reasons} if reasons else None})  # fmt: skip
            elif kind == "metrics":
                outcome.last_metrics = event
                data = {k: v for k, v in event.items() if k != "type"}
                text = f"Step {event['step']}/{event['total_steps']}: training loss={event['train_loss']:.4f}"
                if "train_mean_reward" in event:
                    text += f", mean reward={event['train_mean_reward']:.3f}"
                if "valid_mean_reward" in event:
                    text += f", validation reward={event['valid_mean_reward']:.3f}"
                if "train_reward_margin" in event:
                    text += f", reward margin={event['train_reward_margin']:.4f}"
                if "valid_loss" in event:
                    text += f", validation loss={event['valid_loss']:.4f}"
                if "valid_reward_accuracy" in event:
                    text += f", validation pairs preferred={event['valid_reward_accuracy']:.0%}"
                if event.get("valid_accuracy") is not None:
                    text += f", validation exact answers={event['valid_accuracy']:.0%}"
                events.append({"message": text, "type": "metrics", "data": data})
            elif kind == "best":
                score = event["metrics"].get("valid_accuracy")
                events.append({"message": (
                    f"Best so far: step {event['step']} (epoch {event['epoch']:g}"
                    + (f", validation exact answers={score:.0%}" if score is not None else "")
                    + "); the job's model is this checkpoint unless a later epoch does better"
                ), "data": {"best_step": event["step"], "metrics": event["metrics"]}})  # fmt: skip
            elif kind == "early_stop":
                events.append({"message": (
                    f"Stopped early after epoch {event['epoch']} of {event['n_epochs']}: {event['reason']}; "
                    f"the model is the checkpoint at step {event['best_step']}"
                ), "data": {k: event[k] for k in ("step", "epoch", "n_epochs", "best_step", "reason")}})  # fmt: skip
            elif kind == "checkpoint":
                self.store.jobs.add_events(job["id"], events, worker_id=self.worker_id)
                events = []
                step = int(event["step"])
                metrics = {
                    k: outcome.last_metrics[k]
                    for k in CHECKPOINT_METRICS
                    if k in outcome.last_metrics and outcome.last_metrics.get("step") == step
                }
                key = self._key(event["path"])
                self.blobs.publish(key)  # shared before the row that names it: any machine can resume or serve it
                self.store.jobs.add_checkpoint(
                    {
                        "job_id": job["id"], "step_number": step, "metrics": metrics or {"step": step},
                        "fine_tuned_model_checkpoint": checkpoint_model_id(job["output_model"], step),
                        "path": key,
                    },
                    worker_id=self.worker_id,
                )  # fmt: skip
                events.append({"message": f"Checkpoint created at step {step}", "data": {"step": step}})
            elif kind == "diagnostics":
                events.extend(_diagnostic_events(event))
            elif kind == "done":
                outcome.done = event
            elif kind == "error":
                outcome.error = event
        self.store.jobs.add_events(job["id"], events, worker_id=self.worker_id)

    def _succeed(self, job: JobRow, outcome: _Attempt) -> None:
        assert outcome.done is not None
        directory = job_dir(self.home, job["id"])
        csv_bytes = (directory / "metrics.csv").read_bytes()
        result = self.store.files.create(
            job["workspace_id"], self.blobs, filename="step_metrics.csv", purpose="fine-tune-results",
            data=csv_bytes,
        )  # fmt: skip
        adapter = self._key(outcome.done["adapter_dir"])
        problem = prepare_serving(self.home, self.settings.engine, self._start(job)[0], self.home / adapter)
        if problem is None:
            self.blobs.publish(adapter)  # with its GGUF form: shared before the model row names it
        if problem is not None:
            self.store.files.delete(job["workspace_id"], result["id"], self.blobs)
            self._fail(job, "adapter_conversion_failed", problem, param="model")
            return
        model_row: ModelRow = {
            "workspace_id": job["workspace_id"], "id": job["output_model"], "base_model": self._start(job)[0],
            "job_id": job["id"], "adapter_dir": adapter, "created_at": int(time.time()),
        }  # fmt: skip
        done = self.store.jobs.transition(
            job["id"], self.worker_id, "succeeded",
            fine_tuned_model=job["output_model"], trained_tokens=int(outcome.done["tokens"]),
            result_files=[result["id"]], also=lambda conn: self.store.models.add(conn, model_row),
            messages=[*_reward_summary(outcome), ("info", f"New fine-tuned model created: {job['output_model']}"),
                      ("info", "The job has successfully completed")],
        )  # fmt: skip
        if not done:  # cancelled in the last second: drop the result file we made
            self.store.files.delete(job["workspace_id"], result["id"], self.blobs)
        self._publish_log(job)

    def _fail(self, job: JobRow, code: str, message: str, *, param: str | None = None) -> None:
        self.store.jobs.transition(
            job["id"], self.worker_id, "failed",
            error={"code": code, "message": message, "param": param}, messages=[("error", message)],
        )  # fmt: skip
        self._publish_log(job)

    def _publish_log(self, job: JobRow) -> None:
        """Share the ended job's training log (``tracetune jobs logs`` on another machine reads it); a log that
        cannot be shared is only logged: the job's outcome stands."""
        key = f"jobs/{job['id']}/train.log"
        if not self.blobs.shared or not (self.home / key).is_file():
            return
        try:
            self.blobs.publish(key)
        except Exception as exc:  # the object store down: the outcome is committed already
            log.warning("could not share the training log of %s: %s", job["id"], exc)

    def _log(self, job: JobRow) -> Path:
        return job_dir(self.home, job["id"]) / "train.log"

    def _key(self, path: str) -> str:
        """The blob key of a path the training process wrote under the data home."""
        return Path(path).resolve().relative_to(self.home.resolve()).as_posix()


def training_env(settings: Settings, serving: bool) -> dict[str, str]:
    """The thread settings of a training process (:mod:`tracetune.threads`): all usable cores, less the serving
    engine's when the job runs inside `tracetune serve`; ``TRACETUNE_TRAIN_THREADS`` wins."""
    from tracetune.threads import engine_threads, thread_env, training_threads

    beside = engine_threads(settings.engine_threads) if serving else None
    threads = training_threads(settings.train_threads, beside_engine=beside)
    return {**thread_env(threads), "TRACETUNE_TRAIN_THREADS": str(threads)}


def prepare_serving(home: Path, engine: str, base_id: str, adapter_dir: Path) -> str | None:
    """Convert a new fine-tuned adapter for the engine that will serve it (llama.cpp: a GGUF LoRA adapter beside
    it), so the first request does not wait and a model that cannot be served fails its job: the problem, or
    None."""
    from tracetune.errors import TracetuneError
    from tracetune.models.engines import choose_engine
    from tracetune.models.lora_gguf import ensure_gguf_adapter
    from tracetune.models.registry import resolve

    try:
        if choose_engine(home, base_id, engine).engine != "llamacpp":
            return None
        ensure_gguf_adapter(adapter_dir, resolve(home, base_id).weights_path)
    except (TracetuneError, OSError, ValueError) as exc:
        return (
            f"the fine-tuned adapter cannot be served by llama.cpp: {exc}. "
            "Serve it with the reference engine (TRACETUNE_ENGINE=transformers) and rerun the job."
        )
    return None


def _reward_summary(outcome: _Attempt) -> list[tuple[str, str]]:
    """An RFT job's held-out reward at the end, against its start model's (a message; none for other methods)."""
    end = outcome.last_metrics.get("valid_mean_reward")
    if end is None:
        return []
    start = (outcome.setup or {}).get("valid_mean_reward_start")
    against = f" (the start model's: {start:.3f})" if isinstance(start, int | float) else ""
    return [("info", f"Held-out reward of the fine-tuned model: {end:.3f}{against}")]


def _diagnostic_events(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Job events for the recipe's ``diagnostics``: the served epoch's answers, then one warning per finding
    (what was seen and what to do), each with its finding as ``data``."""
    out: list[dict[str, Any]] = []
    answers: dict[str, int] = event.get("answers") or {}
    if answers:
        total = sum(answers.values())
        shown = "; ".join(f"{n}/{total} {key}" for key, n in list(answers.items())[:5])
        more = f"; and {len(answers) - 5} more distinct answers" if len(answers) > 5 else ""
        out.append({"message": f"Validation answers of the model: {shown}{more}", "data": {"answers": answers}})
    for finding in event.get("findings") or []:
        out.append(
            {
                "message": f"{finding['message']}. {finding['advice']}",
                "level": "warn" if finding.get("level") == "warning" else "info",
                "data": {"diagnostic": finding},
            }
        )
    return out


def _read_events(stream: IO[bytes], out: queue.Queue[dict[str, Any] | None]) -> None:
    """Parse the recipe's JSON lines into ``out``; ``None`` marks the end of the stream."""
    try:
        for raw in stream:
            try:
                event = json.loads(raw)
            except ValueError:
                log.warning("training process wrote a line that is not an event: %r", raw[:200])
                continue
            if isinstance(event, dict):
                out.put(event)
    finally:
        out.put(None)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the training process group, SIGKILL it after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _exit_reason(returncode: int | None, error: dict[str, Any] | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by {name}"
    if error and error.get("message"):
        return f"failed: {error['message']}"
    return f"exited with status {returncode}"
