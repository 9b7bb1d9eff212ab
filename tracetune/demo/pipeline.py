"""``tracetune demo``: the whole loop, trace → select → convert → fine-tune → serve → evaluate, on this machine.

Every stage goes through the interfaces a user's code would: the app is traced by the ``langsmith`` SDK into the
LangSmith-compatible API, its runs are selected with the SDK's v2 ``client.runs.query_v2``, the dataset is built
by tracetune's converter over ``/tt/v1/datasets`` (stored, with lineage), the model is fine-tuned through the OpenAI
Files and Fine-tuning Jobs API with the ``openai`` client, and both models are evaluated through
``/v1/chat/completions`` (:mod:`tracetune.evaluate.replay`). Nothing here reaches into the server's internals, so
``--url`` runs the same demo against any running tracetune.

The stages report to a :class:`Reporter` (the CLI draws it with rich; tests collect it), and a stage that fails
raises :class:`DemoFailed` naming the stage, what went wrong and where to look.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from tracetune.demo.app import APP_NAME, FEEDBACK_KEY, SYSTEM_PROMPT, AccountingAssistant, run_app
from tracetune.demo.questions import Question, make_questions
from tracetune.models.registry import DEFAULT_MODEL_ID

STAGES = ("start", "trace", "select", "export", "fine-tune", "evaluate", "report")
# the runs worth learning from: LLM runs without error in successful traces that their user rated right, or that a
# reviewer corrected (feedback on the LLM run itself, with the right call as its correction)
GOOD = f'and(eq(feedback_key, "{FEEDBACK_KEY}"), eq(feedback_score, 1))'
TRACE_FILTER = f'and(eq(status, "success"), {GOOD[4:-1]})'
DATASET_NAME = "calculator-demo"
SUFFIX = "calculator"
REVIEW_EVERY = 3  # the reviewer corrects two wrong answers in three
log = logging.getLogger("tracetune.demo")


class DemoFailed(Exception):
    """A stage of the demo failed: what, and where to look."""

    def __init__(self, stage: str, message: str, look: str | None = None) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage, self.message, self.look = stage, message, look


class Reporter(Protocol):
    def stage_started(self, stage: str, description: str, total: int | None = None) -> None: ...

    def progress(self, done: int, total: int | None = None, text: str | None = None) -> None: ...

    def stage_done(self, stage: str, seconds: float, result: str) -> None: ...


@dataclass
class DemoOptions:
    home: Path | None = None  # None: a fresh directory under the settings' home (demo/<time>)
    url: str | None = None  # a running tracetune instead of one started here
    api_key: str = "demo"
    quick: bool = False  # fewer questions (CI)
    model: str = DEFAULT_MODEL_ID
    teacher_base_url: str | None = None  # None: this tracetune's base model, with the call forced
    teacher_model: str | None = None
    teacher_api_key: str | None = None
    # Big batches with a higher rate: every row of a batch shares the system prompt + tool schemas, which the
    # recipe runs once per batch, so 8 rows cost about 1.6x one row on the CPU. Measured on the demo's data
    # (37 examples, 24 held out): batch 8 x 3 epochs at 1.5e-3, 92% in 99 s; "auto" (batch 3, 5e-4), 88% in 147 s.
    n_epochs: int | str = 3
    batch_size: int | str = 8
    learning_rate_multiplier: float | str = 3.0
    seed: int = 0
    concurrency: int = 16  # requests in flight (the engine batches up to 16 rows)

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(traced questions, of which failing, held-out questions)``."""
        return (24, 2, 10) if self.quick else (40, 4, 20)


@dataclass
class Demo:
    """What the stages found, as they go; ``summary()`` is the demo's JSON result."""

    options: DemoOptions
    home: Path
    url: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    losses: list[list[float]] = field(default_factory=list)  # [step, training loss]
    evaluation: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    project: str = APP_NAME  # where the app's traces go

    def summary(self) -> dict[str, Any]:
        models = self.evaluation.get("models", {})
        accuracy = {
            role: models[model_id]["summary"]["accuracy"]
            for role, model_id in (("base", self.options.model), ("tuned", self.job.get("fine_tuned_model")))
            if model_id in models
        }
        return {
            "home": str(self.home), "url": self.url, "project": self.project, "model": self.options.model,
            "quick": self.options.quick, "seed": self.options.seed,
            "stages_s": self.timings, "total_s": round(sum(self.timings.values()), 1),
            "runs": self.counts, "dataset": self.dataset, "job": self.job,
            "loss": {"first": self.losses[0][1] if self.losses else None,
                     "last": self.losses[-1][1] if self.losses else None, "steps": self.losses},
            "heldout": self.evaluation.get("examples"), "accuracy": accuracy, "files": self.files,
        }  # fmt: skip


def default_home(settings_home: Path) -> Path:
    """A fresh demo home under ``settings_home``: ``demo/<UTC time>``."""
    return Path(settings_home) / "demo" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def new_demo(options: DemoOptions, settings_home: Path) -> Demo:
    """A demo in ``options.home``, or in a fresh home under ``settings_home``."""
    home = Path(options.home) if options.home else default_home(settings_home)
    home.mkdir(parents=True, exist_ok=True)
    return Demo(options, home)


def run_demo(options: DemoOptions, reporter: Reporter, *, settings_home: Path | None = None) -> dict[str, Any]:
    """Run every stage; the summary (also written to ``HOME/report/summary.json``). Raises :class:`DemoFailed`."""
    from tracetune.config import load_settings

    settings_home = settings_home or load_settings().home
    demo = new_demo(options, settings_home)
    traced, failing, heldout = options.sizes
    questions, heldout_questions = make_questions(traced, heldout, n_failing=failing, seed=options.seed)
    with logging_to(demo.home / "demo.log"), demo_server(demo, reporter, settings_home) as url:
        demo.url = url
        with stage(demo, reporter, "trace", f"tracing the app on {traced} questions", total=traced) as done:
            counts, line = trace_batch(demo, reporter, questions)
            demo.counts.update(counts)
            done(line)
        with stage(demo, reporter, "select", "selecting good LLM runs with the langsmith SDK") as done:
            done(_select(demo))
        with stage(demo, reporter, "export", "building the dataset with tracetune's converter") as done:
            records = _export(demo)
            done(f"{len(records)} training conversations ({demo.dataset['id']})")
        with stage(demo, reporter, "fine-tune", f"fine-tuning {options.model} (LoRA)") as done:
            done(_fine_tune(demo, reporter))
        with stage(demo, reporter, "evaluate", f"base vs tuned on {heldout} held-out questions") as done:
            done(_evaluate(demo, reporter, heldout_questions, records[0].get("tools") or []))
    with stage(demo, reporter, "report", "writing the report") as done:
        done(_report(demo))
    summary = demo.summary()  # with every stage's time
    Path(demo.files["summary"]).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


# -- stages --------------------------------------------------------------------------------------------------


@contextmanager
def stage(demo: Demo, reporter: Reporter, name: str, description: str, total: int | None = None) -> Iterator[Any]:
    """Times a stage and turns its failure into :class:`DemoFailed` (with the log to look at)."""
    started = time.perf_counter()
    result: list[str] = []
    reporter.stage_started(name, description, total)
    try:
        yield result.append
    except DemoFailed:
        raise
    except Exception as exc:
        log.exception("stage %s failed", name)
        raise DemoFailed(name, f"{type(exc).__name__}: {exc}", str(demo.home / "demo.log")) from exc
    demo.timings[name] = round(time.perf_counter() - started, 2)
    reporter.stage_done(name, demo.timings[name], result[0] if result else "")


@contextmanager
def demo_server(demo: Demo, reporter: Reporter, settings_home: Path) -> Iterator[str]:
    """The server the demo talks to: ``--url``, or one started in this process on the demo home (its base
    model's weights shared with the main home's cache, so only the very first demo pays for de-quantizing)."""
    if demo.options.url:
        with stage(demo, reporter, "start", f"using {demo.options.url}") as done:
            _wait_healthy(demo.options.url)
            done(demo.options.url)
        yield demo.options.url.rstrip("/")
        return
    from tracetune.config import load_settings
    from tracetune.server.inprocess import InProcessServer

    with stage(demo, reporter, "start", f"starting tracetune on {demo.home}") as done:
        _share_model_cache(demo.options.model, settings_home, demo.home)
        database_url = f"sqlite:///{demo.home / 'tracetune.db'}" if not demo.options.home else None
        server = InProcessServer(load_settings(home=demo.home, database_url=database_url, run_jobs=True)).start()
        _warm_up(server.url, demo.options)
        done(server.url)
    try:
        yield server.url
    finally:
        server.stop()


def _share_model_cache(model: str, settings_home: Path, home: Path) -> None:
    """Point ``home``'s caches of the built-in model (float32 weights, tokenizer) at ``settings_home``'s, made
    there first if missing: a fresh demo home then loads the model in seconds."""
    from tracetune.models.registry import resolve
    from tracetune.models.tokenizer import load_tokenizer, tokenizer_dir
    from tracetune.models.weights import cached_weights, weights_dir

    spec = resolve(settings_home, model)
    if not spec.builtin or Path(settings_home).resolve() == Path(home).resolve():
        return
    load_tokenizer(settings_home, spec.id)
    for target, shared in (
        (weights_dir(home, spec.id), cached_weights(settings_home, spec)),
        (tokenizer_dir(home, spec.id), tokenizer_dir(settings_home, spec.id)),
    ):
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(shared.resolve(), target_is_directory=True)


def _warm_up(url: str, options: DemoOptions) -> None:
    """One token from the base model, so that loading it is part of start-up, not of the first question."""
    openai_client(url, options.api_key).chat.completions.create(
        model=options.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )


def trace_batch(
    demo: Demo, reporter: Reporter, questions: list[Question], *, model: str | None = None, stage_name: str = "trace"
) -> tuple[dict[str, int], str]:
    """The app answers ``questions``, traced into the demo's project and rated (its counts, and a line saying
    them). Its model: ``model`` on this tracetune (an alias, say), else the teacher."""
    import langsmith

    opts = demo.options
    if model is None and opts.teacher_base_url:
        app = AccountingAssistant(
            base_url=opts.teacher_base_url, model=opts.teacher_model or opts.model,
            api_key=opts.teacher_api_key or opts.api_key,
        )  # fmt: skip
    else:
        app = AccountingAssistant(base_url=f"{demo.url}/v1", model=model or opts.model, api_key=opts.api_key)
    client = langsmith.Client(api_url=f"{demo.url}/api/v1", api_key=opts.api_key)
    outcomes = run_app(
        app, questions, client=client, project=demo.project, concurrency=opts.concurrency, review_every=REVIEW_EVERY,
        progress=lambda n: reporter.progress(n, len(questions)),
    )  # fmt: skip
    failed = [o for o in outcomes if o.error]
    right = sum(o.correct for o in outcomes)
    corrected = sum(o.corrected for o in outcomes)
    counts = {
        "traced": len(outcomes), "failed": len(failed), "rated_up": right, "rated_down": len(outcomes) - right,
        "corrected": corrected,
    }  # fmt: skip
    for outcome in failed:
        log.info("trace %s failed: %s", outcome.run_id, outcome.error)
    if len(failed) == len(outcomes):
        look = str(demo.home / "demo.log")
        raise DemoFailed(stage_name, f"every question failed; the first: {failed[0].error}", look)
    wrong = len(outcomes) - right - len(failed)
    return counts, f"{len(outcomes)} traces: {right} right, {wrong} wrong ({corrected} corrected), {len(failed)} failed"


def _select(demo: Demo) -> str:
    """The SDK's v2 query API (``client.runs.query_v2``, what replaces ``list_runs``) picks the runs to learn from:
    LLM runs of positively rated traces, and corrected ones."""
    import asyncio

    import langsmith

    client = langsmith.Client(api_url=f"{demo.url}/api/v1", api_key=demo.options.api_key)
    project = client.read_project(project_name=demo.project)
    # Not the project's start_time: a run starts before its first post creates the project.
    since = datetime.now(UTC) - timedelta(days=7)
    scope: dict[str, Any] = {"project_ids": [str(project.id)], "min_start_time": since, "selects": ["ID"]}

    async def query(**conditions: Any) -> list[Any]:
        return [run async for run in client.runs.query_v2(**scope, **conditions)]

    async def select_all() -> tuple[list[Any], list[Any], list[Any]]:
        llm_runs = {"run_type": "LLM", "has_error": False}
        return (
            await query(is_root=True),
            await query(**llm_runs, trace_filter=TRACE_FILTER),
            await query(**llm_runs, filter=GOOD, trace_filter='eq(status, "success")'),
        )

    roots, rated, fixed = asyncio.run(select_all())
    ids = {str(r.id) for r in rated} | {str(r.id) for r in fixed}
    demo.counts.update(root_runs=len(roots), selected=len(ids))
    if not ids:
        raise DemoFailed(
            "select", "no LLM run is in a successful, positively rated trace: the teacher got every question wrong "
            "(try a stronger one: --teacher-base-url URL --teacher-model ID)",
        )  # fmt: skip
    demo.dataset["selected_run_ids"] = sorted(ids)
    return f"{len(ids)} LLM runs of {len(roots)} traces: {len(rated)} rated right, {len(fixed)} corrected"


def _export(demo: Demo) -> list[dict[str, Any]]:
    with tt_client(demo) as http:
        body = {
            "name": DATASET_NAME,
            "selection": {"project": demo.project, "run_type": "llm", "filter": 'eq(status, "success")',
                          "trace_filter": 'eq(status, "success")', "feedback_key": FEEDBACK_KEY, "min_score": 1},
            "options": {"dedupe": True, "use_corrections": True, "model": demo.options.model},
        }  # fmt: skip
        dataset = ok(http.post("/tt/v1/datasets", json=body)).json()
        lines = ok(http.get(f"/tt/v1/datasets/{dataset['id']}/records", params={"lineage": "true"})).text
    rows = [json.loads(line) for line in lines.splitlines() if line.strip()]
    records = [row["record"] for row in rows]
    exported_runs = sorted({run_id for row in rows for run_id in row["run_ids"]})
    if exported_runs != demo.dataset["selected_run_ids"]:
        raise DemoFailed("export", "the dataset's runs are not the runs the SDK selected (see demo.log)")
    summary = dataset.get("summary") or {}
    demo.dataset.update(id=dataset["id"], name=dataset["name"], records=len(records), problems=summary.get("problems"))
    demo.counts["exported"] = len(records)
    if not records:
        raise DemoFailed("export", f"the converter kept no record of {len(exported_runs)} runs: {summary}")
    path = demo.home / "report" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    demo.files["train"] = str(path)
    return records


def _fine_tune(demo: Demo, reporter: Reporter) -> str:
    client = openai_client(demo.url, demo.options.api_key)
    with open(demo.files["train"], "rb") as f:
        upload = client.files.create(file=f, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=demo.options.model, training_file=upload.id, suffix=SUFFIX, seed=demo.options.seed,
        hyperparameters={
            "n_epochs": demo.options.n_epochs, "batch_size": demo.options.batch_size,
            "learning_rate_multiplier": demo.options.learning_rate_multiplier,
        },
    )  # fmt: skip
    demo.job["id"] = job.id
    look = f"{demo.home / 'jobs' / job.id / 'train.log'} and `tracetune jobs events {job.id} --home {demo.home}`"
    seen = 0
    while True:
        job = client.fine_tuning.jobs.retrieve(job.id)
        events = list(reversed(client.fine_tuning.jobs.list_events(job.id, limit=1000).data))
        for event in events[seen:] if len(events) > seen else []:
            data = event.data or {}
            if event.type == "metrics" and "train_loss" in data:
                demo.losses.append([int(data["step"]), round(float(data["train_loss"]), 4)])
                reporter.progress(int(data["step"]), int(data["total_steps"]), f"loss {data['train_loss']:.3f}")
        seen = len(events)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    if job.status != "succeeded":
        reason = job.error.message if job.error and job.error.message else job.status
        raise DemoFailed("fine-tune", f"job {job.id} {job.status}: {reason}", look)
    demo.job.update(
        status=job.status, fine_tuned_model=job.fine_tuned_model, trained_tokens=job.trained_tokens,
        hyperparameters=job.hyperparameters.model_dump() if job.hyperparameters else None,
    )  # fmt: skip
    first, last = demo.losses[0][1], demo.losses[-1][1]
    return f"{job.fine_tuned_model}: loss {first:.3f} → {last:.3f} over {int(demo.losses[-1][0])} steps"


def _evaluate(demo: Demo, reporter: Reporter, questions: list[Question], tools: list[dict[str, Any]]) -> str:
    from tracetune.evaluate.replay import evaluate

    records = [(i, heldout_record(q, tools)) for i, q in enumerate(questions, 1)]
    path = demo.home / "report" / "heldout.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for _, r in records), encoding="utf-8")
    demo.files["heldout"] = str(path)
    models = [demo.options.model, demo.job["fine_tuned_model"]]
    total = len(records) * len(models)
    finished: dict[str, int] = {}

    def progress(model: str, done: int, _total: int) -> None:
        finished[model] = done
        reporter.progress(sum(finished.values()), total, model)

    demo.evaluation = evaluate(
        openai_client(demo.url, demo.options.api_key), models, records, max_tokens=64,
        concurrency=demo.options.concurrency, progress=progress,
    )  # fmt: skip
    acc = demo.summary()["accuracy"]
    return f"held-out accuracy: base {acc['base']:.0%}, tuned {acc['tuned']:.0%}"


def heldout_record(question: Question, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The held-out conversation for ``question``: the app's prompt and the right call (with the tools that the
    training records offered, so both see the same prompt)."""
    call = {"name": "Calculator", "arguments": json.dumps(question.call)}
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question.text},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_1", "type": "function", "function": call}]},
        ],
        "tools": tools,
    }  # fmt: skip


def _report(demo: Demo) -> str:
    from tracetune.demo.report import write_report

    demo.files["summary"] = str(demo.home / "report" / "summary.json")  # written once the stage is timed
    demo.files.update(write_report(demo.summary(), demo.evaluation, demo.home / "report"))
    return str(demo.home / "report")


# -- plumbing ------------------------------------------------------------------------------------------------


def openai_client(url: str, api_key: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=api_key, max_retries=0, timeout=600)


@contextmanager
def tt_client(demo: Demo) -> Iterator[Any]:
    import httpx

    headers = {"x-api-key": demo.options.api_key}
    with httpx.Client(base_url=demo.url, headers=headers, timeout=600) as http:
        yield http


def ok(response: Any) -> Any:
    if response.status_code >= 400:
        request = response.request
        raise RuntimeError(f"{request.method} {request.url.path} → {response.status_code}: {response.text[:500]}")
    return response


def _wait_healthy(url: str, timeout_s: float = 5.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url.rstrip('/')}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer /healthz within {timeout_s:.0f} s: is tracetune running there?")
        time.sleep(0.5)


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """Everything logged while the demo runs (server, training runner, SDKs, warnings) goes to ``path``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # libraries' warnings (deprecations) go to the log, not between the stages
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
