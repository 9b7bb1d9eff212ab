"""The whole path in a real headless Chromium (Debian's ``chromium``; no browser download): log in with a key →
open a trace the real ``langsmith`` SDK recorded → rate it → build a dataset from a feedback filter → fine-tune
("tiny", a random Llama, trained by the server's job runner) → watch it succeed with a loss chart → chat with the
tuned model in the playground. A screenshot of each page goes to ``$TRACETUNE_TEST_ARTIFACTS/ui`` (default
``artifacts/ui``). Along the way: hostile HTML/JS from a trace never executes, and no page fetches anything but
the tracetune server.

Skipped when Chromium or Playwright is missing, except in CI (``CI`` set), where that fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, LiveServer
from tests.ui.support import llm_trace

CHROMIUM = Path("/usr/bin/chromium")
APPS = Path(__file__).parent / "apps"
TIMEOUT_MS = 240_000  # the longest wait: a fine-tune on two CPU cores


def _need_browser() -> Any:
    problem = None
    if not CHROMIUM.exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            from playwright import sync_api
        except ImportError:
            problem = "the playwright package is not installed (the test extra)"
    if problem:
        if IN_CI:
            pytest.fail(f"CI must provide the browser: {problem}")
        pytest.skip(problem)
    return sync_api


@pytest.fixture(scope="module")
def keyed_server(tiny_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A server with an API key configured and its job runner on, over the "tiny" data home."""
    from tracetune.config import Settings
    from tracetune.store import open_store

    db = tmp_path_factory.mktemp("browser-db") / "tracetune.db"
    settings = Settings(home=tiny_home, database_url=f"sqlite:///{db}", job_stale_after_s=5)
    store = open_store(settings.resolved_database_url, sqlite_synchronous="NORMAL")
    key, _ = store.workspaces.create_key("default", "browser-test")
    server = LiveServer(settings, store, lifespan="on")
    try:
        yield server, key
    finally:
        server.stop()
        store.close()


def trace_with_sdk(server: LiveServer, key: str, project: str, questions: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "OPENAI_"))}
    env.update(
        LANGSMITH_ENDPOINT=server.langsmith_url, LANGSMITH_API_KEY=key, LANGSMITH_TRACING="true",
        LANGSMITH_PROJECT=project, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(APPS / "traced_calculator.py"), str(questions)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Failed to" not in done.stderr, done.stderr


# Installed before Send: whether Send was disabled and said "Generating…" and how often the streaming answer grew.
WATCH_PLAYGROUND = """() => {
  window.__seen = {sendDisabled: false, generating: false, streamed: 0};
  new MutationObserver((records) => {
    const send = document.getElementById("pg-send");
    if (send && send.disabled) window.__seen.sendDisabled = true;
    if (send && send.textContent.includes("Generating")) window.__seen.generating = true;
    for (const record of records) {  // text added to the streaming answer (maybe swapped out since: still counted)
      const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
      if (node && node.closest("#pg-streaming") && node.textContent) window.__seen.streamed += 1;
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def latencies(page: Any) -> list[float]:
    """The runs table's latency column, in seconds (``400 ms``, ``2.35 s``)."""
    texts = page.eval_on_selector_all("#runs tbody tr td:nth-child(8)", "cells => cells.map(c => c.textContent)")
    return [float(t.split()[0]) / (1000 if t.strip().endswith("ms") else 1) for t in texts if t.strip()]


def test_trace_to_tuned_model_in_a_browser(keyed_server, artifacts):
    sync_api = _need_browser()
    server, key = keyed_server
    trace_with_sdk(server, key, "calculator", questions=4)
    base = server.url
    outside: list[str] = []
    dialogs: list[str] = []

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(30_000)
        page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        expect = sync_api.expect

        def shot(name: str) -> None:
            page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

        # -- log in: the key's workspace scopes every page ----------------------------------------------------
        page.goto(base + "/")
        expect(page).to_have_url(base + "/login?next=/")
        page.fill("input[name=key]", "tt_wrong")
        page.click("#login-button")
        expect(page.locator("#login-error")).to_contain_text("invalid or revoked")
        page.fill("input[name=key]", key)
        shot("01-login")
        page.click("#login-button")
        expect(page.locator("#projects")).to_contain_text("calculator")
        shot("02-projects")

        # -- the runs table: filter (errors inline), then open a trace ----------------------------------------
        page.click("#projects >> text=calculator")
        expect(page.locator("#runs tbody tr")).to_have_count(16)  # 4 traces x (agent, model, add, model)
        page.fill("input[name=filter]", 'eq(run_type "llm")')
        page.click("#apply-filter")
        expect(page.locator("#filter-error")).to_contain_text("at position 12")
        shot("03-runs-filter-error")
        page.fill("input[name=filter]", 'eq(name, "calculator-agent")')
        page.click("#apply-filter")
        expect(page.locator("#runs tbody tr")).to_have_count(4)
        expect(page.locator("#run-count")).to_have_text("4")  # the view's totals, loaded after the table
        page.click("#columns summary")  # the column chooser: hide Input, remembered across a reload
        page.uncheck('#columns input[data-column="Input"]')
        expect(page.locator("#runs thead th", has_text="Input")).to_be_hidden()
        page.reload()
        expect(page.locator("#runs thead th", has_text="Input")).to_be_hidden()
        expect(page.locator("#runs tbody tr").first.locator("td").nth(2)).to_be_hidden()
        page.click("#columns summary")
        page.check('#columns input[data-column="Input"]')
        expect(page.locator("#runs thead th", has_text="Input")).to_be_visible()
        assert "filter=eq" in page.url  # htmx pushed the filter into the address
        shot("04-runs")
        runs_url = page.url
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot("04b-runs-390px")
        page.set_viewport_size({"width": 1440, "height": 1000})
        page.emulate_media(color_scheme="dark")  # dark mode follows the system setting
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(20, 23, 28)"
        assert page.evaluate("getComputedStyle(document.querySelector('#runs')).backgroundColor") == "rgb(28, 32, 39)"
        shot("04c-runs-dark")
        page.emulate_media(color_scheme="light")
        page.locator("#runs tbody tr").nth(0).locator("input[type=checkbox]").check()  # bulk: rate ticked runs
        page.click("#bulk-down")
        expect(page.locator("#runs tbody tr").nth(0)).to_contain_text("user_score: 0")
        assert "filter=eq" in page.url and page.locator("#runs tbody tr").count() == 4  # back where it was
        assert not dialogs and page.evaluate("window.__pwned") is None  # the hostile question showed as text
        page.click("#sort-latency")  # sorted by a column header: slowest first, then (clicked again) fastest
        expect(page.locator("#sort-latency")).to_have_text("Latency ▼")
        assert latencies(page) == sorted(latencies(page), reverse=True) and len(latencies(page)) == 4
        page.click("#sort-latency")
        expect(page.locator("#sort-latency")).to_have_text("Latency ▲")
        assert latencies(page) == sorted(latencies(page))
        expect(page.locator("#run-count")).to_have_text("4")  # the count of the view, whatever its order
        for row in (0, 1):  # tick two runs and add them to a dataset: one new version, linked from the table
            page.locator("#runs tbody tr").nth(row).locator("input[type=checkbox]").check()
        page.fill("#bulk-dataset", "picked by hand")
        page.click("#bulk-add")
        expect(page.locator("#added")).to_contain_text("Added 2 runs to picked by hand (version 1)")
        page.goto(runs_url)

        for row in (1, 2):  # rate the final answer of two traces (the newest first: the hostile one is row 0)
            page.locator("#runs tbody tr").nth(row).locator("a").first.click()
            expect(page.locator("#run-tree .node")).to_have_count(4)
            if row == 1:  # with the mouse
                page.locator("#run-tree .node").nth(3).locator("a").click()  # the second model call: the answer
            else:  # at keyboard speed: j j j walks the tree to the answer, 1 rates it
                for at in (1, 2, 3):
                    page.keyboard.press("j")
                    expect(page.locator("#run-tree .node").nth(at)).to_have_class(re.compile(r"\bon\b"))
            expect(page.locator("#chat")).to_contain_text("The answer is")
            expect(page.locator("#chat .toolcall").first).to_contain_text("call add")
            if row == 1:
                page.click("#thumbs-up")
            else:
                page.keyboard.press("1")
            expect(page.locator('#feedback-panel [data-feedback-key="user_score"]')).to_contain_text("1")
            if row == 1:
                page.click("#raw-json summary")
                expect(page.locator("#raw-json pre")).to_contain_text('"run_type": "llm"')
                shot("05-trace-rated")
                page.set_viewport_size({"width": 390, "height": 844})
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                shot("05b-trace-390px")
                page.set_viewport_size({"width": 1440, "height": 1000})
            page.goto(runs_url)
            expect(page.locator("#runs tbody tr")).to_have_count(4)

        page.locator("#runs tbody tr").nth(0).locator("a").first.click()  # the hostile trace
        expect(page.locator("#run-tree .node")).to_have_count(4)
        page.locator("#run-tree .node").nth(1).locator("a").click()
        expect(page.locator("#chat")).to_contain_text("<script>window.__pwned = 1; alert(1)</script>")
        shot("06-trace-hostile")
        assert not dialogs and page.evaluate("window.__pwned") is None

        # -- a dataset from the runs page's facets, changed in place: preview, save, download -----------------
        page.goto(runs_url)
        page.fill("input[name=filter]", "")
        page.select_option("select[name=run_type]", "llm")
        page.select_option("select[name=feedback]", "up")
        page.click("#apply-filter")
        expect(page.locator("#runs tbody tr")).to_have_count(2)
        expect(page.locator("#build-dataset")).to_have_attribute("href", re.compile("run_type=llm.*user_score"))
        page.click("#build-dataset")
        expect(page.locator("#project")).to_have_value("calculator")
        page.select_option("#model", "tiny")
        page.click("#preview-button")
        expect(page.locator("#preview .record")).to_have_count(2)
        expect(page.locator("#preview-summary")).to_contain_text("2 (2 train, 0 validation)")
        shot("07-dataset-preview")
        page.fill("#dataset-name", "calculator-liked")
        page.click("#save-dataset")
        expect(page.locator("#dataset-title")).to_have_text("calculator-liked")
        expect(page.locator("#lineage")).to_contain_text("user_score")
        shot("08-dataset")
        download = page.request.get(base + (page.locator("#download-train").get_attribute("href") or ""))
        assert download.status == 200 and len(download.text().splitlines()) == 2

        # -- fine-tune it and watch it succeed ----------------------------------------------------------------
        page.select_option("#ft-model", "tiny")
        page.fill("#ft-suffix", "calc")
        page.fill("#ft-epochs", "2")
        page.fill("#ft-batch", "1")
        page.click("#start-fine-tune")
        expect(page.locator("#job-live")).to_have_attribute("data-status", "succeeded", timeout=TIMEOUT_MS)
        expect(page.locator("#train-line")).to_have_count(1)
        expect(page.locator("#checkpoints tbody tr").first).to_be_visible()
        expect(page.locator("#events")).to_contain_text("The job has successfully completed")
        shot("09-job-succeeded")
        tuned = page.locator("#job-model a").inner_text()
        assert tuned.startswith("ft:tiny:default:calc:")

        page.click("header >> text=Models")
        expect(page.locator("#tuned-models")).to_contain_text("calculator-liked v1")
        expect(page.locator("#tuned-models")).to_contain_text("runs of calculator")
        shot("10-models")
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot("10c-models-390px")
        page.set_viewport_size({"width": 1440, "height": 1000})
        page.click("header >> text=Jobs")
        expect(page.locator("#jobs")).to_contain_text("succeeded")
        shot("10a-jobs")
        page.click("header >> text=Datasets")
        expect(page.locator("#datasets")).to_contain_text("calculator-liked")
        shot("10b-datasets")

        # -- edit a record of the dataset (a new version), then compare it with v1 ----------------------------
        page.click("#datasets >> text=calculator-liked")
        first = page.locator(".record.chat").first
        first.locator("summary").click()
        box = first.locator("textarea[name=outputs]")
        box.fill((box.input_value()).replace("The answer is 7.", "It is 7."))
        first.locator("text=Save as a new version").click()
        expect(page.locator("#edited")).to_contain_text("version 2")
        expect(page.locator(".record.chat").first).to_contain_text("It is 7.")
        page.select_option("#compare-to", label="v1")
        page.click("#compare")
        expect(page.locator("#compare-summary")).to_contain_text("1 changed")
        shot("10d-dataset-compare")

        # -- chat with the tuned model, tools offered ---------------------------------------------------------
        page.goto(base + "/playground?model=" + tuned)
        expect(page.locator("#pg-model")).to_have_value(tuned)
        page.fill("#pg-tools", '[{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]')
        page.fill("#pg-content", "What is 2 + 3?")
        page.click("#pg-send")
        expect(page.locator("#conversation .msg.assistant")).to_have_count(1, timeout=120_000)
        expect(page.locator("#conversation .msg.user")).to_contain_text("What is 2 + 3?")
        # the base model (random weights: it writes text) streams its answer; Send is disabled meanwhile
        page.goto(base + "/playground?model=tiny")
        page.fill("#pg-content", "Say something")
        page.fill("input[name=max_tokens]", "8")
        page.evaluate(WATCH_PLAYGROUND)  # records what the page shows while the answer streams
        page.click("#pg-send")
        expect(page.locator("#conversation .msg.assistant")).to_have_count(1, timeout=120_000)
        expect(page.locator("#pg-streaming")).to_have_count(0)  # the finished turn replaced the streaming one
        seen = page.evaluate("window.__seen")
        assert seen["sendDisabled"] and seen["generating"] and seen["streamed"] >= 1, seen
        assert page.locator("#conversation .msg.assistant .text").text_content()  # random weights: newlines, say
        expect(page.locator("#pg-send")).to_be_enabled()
        shot("11-playground")

        # -- log out: the pages ask for the key again ---------------------------------------------------------
        page.click("#logout")
        expect(page).to_have_url(base + "/login")
        browser.close()

    assert not outside, f"pages fetched from outside the server: {outside}"
    assert not dialogs


def test_job_and_model_pages_show_validation_scores_and_diagnostics(keyed_server, artifacts):
    """A real job (the "tiny" model, trained by the server's job runner) with a validation file: the job page shows
    each epoch's validation scores with the served (best) epoch marked, the served epoch's answers and the
    diagnostics with what to do; the models page shows the tuned model's score and its warnings."""
    import io
    import json

    import openai

    from tracetune.demo.tickets import make_tickets

    sync_api = _need_browser()
    server, key = keyed_server
    traced, heldout = make_tickets(12, 6, seed=3)
    skewed = [t.record() for t in traced if t.team == "sales"]  # training sees one team only
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key)
    files = [
        client.files.create(file=(name, io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())),
                            purpose="fine-tune").id
        for name, rows in (("train.jsonl", skewed), ("valid.jsonl", [t.record() for t in heldout]))
    ]  # fmt: skip
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=files[0], validation_file=files[1], suffix="triage",
        hyperparameters={"n_epochs": 2, "batch_size": 2},
    )  # fmt: skip
    base = server.url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(30_000)
        expect = sync_api.expect
        page.goto(base + "/login")
        page.fill("input[name=key]", key)
        page.click("#login-button")
        page.goto(f"{base}/jobs/{job.id}")
        expect(page.locator("#job-live")).to_have_attribute("data-status", "succeeded", timeout=TIMEOUT_MS)
        expect(page.locator("#validation tbody tr")).to_have_count(2)  # one row per epoch
        expect(page.locator("#validation tr.best #best-epoch")).to_have_text("served: the best epoch")
        expect(page.locator("#answers")).to_contain_text("Validation answers of the model")
        unseen = page.locator('#diagnostics .diagnostic[data-code="unseen_values"]')
        expect(unseen.first).to_contain_text("route_ticket.team: validation expects")
        expect(unseen.first).to_contain_text("add training examples with it")
        expect(page.locator("#checkpoints thead")).to_contain_text("Exact answers")
        page.screenshot(path=str(artifacts / "12-job-validation.png"), full_page=True)
        page.goto(base + "/models")
        row = page.locator("#tuned-models tr", has_text="triage")
        expect(row.locator("td.quality")).to_contain_text("exact")
        expect(row.locator('.diagnostic[data-code="unseen_values"]').first).to_contain_text("validation expects")
        page.screenshot(path=str(artifacts / "13-models-validation.png"), full_page=True)

        # aliases: point one at the base model, then at the tuned one, then roll it back
        tuned = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
        for target in ("tiny", tuned):
            page.fill("#alias-name", "support-bot")
            page.select_option("#alias-model", target)
            page.click("#alias-set")
        alias = page.locator('#stored-aliases tr[data-alias="support-bot"]')
        expect(alias.locator(".alias-model")).to_have_text(tuned)
        alias.locator("button.rollback").click()
        expect(alias.locator(".alias-model")).to_have_text("tiny")
        expect(alias).to_contain_text("rollback to v1")
        page.screenshot(path=str(artifacts / "14-aliases.png"), full_page=True)
        assert client.models.retrieve("support-bot").id == "support-bot"
        browser.close()


def test_an_automation_in_a_browser(keyed_server, artifacts):
    """Create an automation (a bad gate first: the error names it), fire it, watch the firing's steps go by live,
    open its evaluation page (scores side by side, every held-out example), roll its alias back."""
    from tests.dataset_support import chat_run, ingest
    from tracetune.convert.dataset_builder import ExportOptions, Selection
    from tracetune.convert.export import export_dataset

    sync_api = _need_browser()
    server, key = keyed_server
    ws = server.store.workspaces.get("default")
    ingest(server.store, ws.id, [chat_run(f"What is {i} + {i}?", str(2 * i), n=i) for i in range(4)], "loop-app")
    ingest(server.store, ws.id, [chat_run(f"What is {i} - 1?", str(i - 1), n=i) for i in range(3)], "loop-heldout")
    options = ExportOptions(model="tiny", name="loop-heldout")
    export_dataset(server.store, ws.id, Selection(project="loop-heldout"), options, home=server.settings.home)
    server.store.aliases.set(ws.id, "loop-bot", "tiny")
    base = server.url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(30_000)
        expect = sync_api.expect
        page.goto(base + "/login")
        page.fill("input[name=key]", key)
        page.click("#login-button")
        page.click("header >> text=Automations")
        expect(page.locator("#no-automations")).to_be_visible()
        page.fill("#a-name", "loop")
        page.fill("#a-project", "loop-app")
        page.fill("#a-every-runs", "1000")
        page.select_option("#a-eval-dataset", "loop-heldout")
        page.fill("#a-gate", "f1 >= 0.5")
        page.fill("#a-alias", "loop-bot")
        page.select_option("#a-base-model", "tiny")
        page.fill("#a-hyperparameters", '{"n_epochs": 1, "batch_size": 2}')
        page.click("#a-create")
        expect(page.locator("#automation-error")).to_contain_text("unknown metric 'f1'")
        expect(page.locator("#automation-error")).to_contain_text("field gate")
        page.fill("#a-gate", "accuracy >= 0")
        page.click("#a-create")
        expect(page.locator("h1")).to_contain_text("Automation loop")
        expect(page.locator("#no-firings")).to_be_visible()
        page.screenshot(path=str(artifacts / "15-automation.png"), full_page=True)

        page.click("#fire")
        expect(page.locator('#firings tr[data-firing="1"]')).to_be_visible()
        page.click('#firings tr[data-firing="1"] a')
        expect(page.locator("#steps")).to_contain_text("took 4 new runs")  # the page refreshes as the steps go
        expect(page.locator("#firing-live")).to_have_attribute("data-status", "succeeded", timeout=TIMEOUT_MS)
        expect(page.locator("#decision")).to_contain_text("promoted: loop-bot v2")
        expect(page.locator('#scores tr[data-metric="accuracy"] td')).to_have_count(3)  # label, candidate, current
        expect(page.locator("#examples tbody tr")).to_have_count(3)
        expect(page.locator("#examples")).to_contain_text("What is 0 - 1?")
        page.screenshot(path=str(artifacts / "16-firing-evaluation.png"), full_page=True)

        page.click("text=« loop")
        expect(page.locator("#alias-model")).to_contain_text("ft:tiny:default:loop:")
        expect(page.locator("#history-chart")).to_be_visible()
        page.click("#rollback")
        page.goto(base + "/automations/loop")
        expect(page.locator("#alias-model")).to_have_text("tiny")
        page.screenshot(path=str(artifacts / "17-automation-rolled-back.png"), full_page=True)
        browser.close()


def test_the_reported_bugs_stay_fixed_in_a_browser(sqlite_server: LiveServer, artifacts: Path) -> None:
    """Issue 18's bugs the main flow does not walk through, in Chromium: a one-step loss chart draws its point
    and the time left reads as words; Cancel asks first (dismissed: nothing happens; accepted: the job says it
    made no model); a job made with the openai client names its uploaded file; the favicon is served; a malformed
    address gets an HTML error page; a pending LLM run shows its prompt and "no answer yet"."""
    from tracetune.store.jobs import new_id
    from tracetune.store.workspaces import DEFAULT_WORKSPACE

    sync_api = _need_browser()
    server, base = sqlite_server, sqlite_server.url
    ws = server.store.workspaces.ensure(DEFAULT_WORKSPACE)
    line = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
    upload = server.store.files.create(ws.id, server.app.state.tt.blobs, filename="train.jsonl",
                                       purpose="fine-tune", data=line)  # fmt: skip
    job_id = new_id("ftjob")
    server.store.jobs.create(
        {"id": job_id, "workspace_id": ws.id, "model": "tiny", "training_file": upload["id"], "seed": 1,
         "method": {"type": "supervised"}, "hyperparameters": {"n_epochs": 1}, "output_model": "ft:tiny:default::b"},
        ["Created fine-tuning job"],
    )  # fmt: skip
    step = {"step": 1, "total_steps": 900, "train_loss": 2.5, "eta_s": 1234.4}
    server.store.jobs.add_events(job_id, [{"message": "Step 1", "type": "metrics", "data": step}])
    pending = {**llm_trace(f"pending-{uuid.uuid4().hex[:6]}")[1], "end_time": None, "outputs": None}
    pending.update(parent_run_id=None, trace_id=pending["id"], dotted_order=pending["dotted_order"].split(".")[-1])
    assert httpx.post(server.langsmith_url + "/runs/batch", json={"post": [pending]}).status_code == 202

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(30_000)
        expect = sync_api.expect
        answers: list[bool] = [False]  # the next confirm dialog: dismissed, then accepted
        page.on("dialog", lambda d: d.accept() if answers.pop(0) else d.dismiss())

        page.goto(f"{base}/jobs/{job_id}")
        expect(page.locator("circle.train-point")).to_have_count(1)
        expect(page.locator("#eta")).to_have_text("20 min 34 s")
        expect(page.locator("#job-files a")).to_have_text("train.jsonl")
        page.click("#cancel-job")  # dismissed: still live
        expect(page.locator("#job-live")).to_have_attribute("data-status", "validating_files")
        answers.append(True)
        page.click("#cancel-job")
        expect(page.locator("#job-live")).to_have_attribute("data-status", "cancelled")
        expect(page.locator("body")).to_contain_text("none: the job cancelled")
        expect(page.locator("header >> text=Jobs")).to_be_visible()  # the page around the job is still there
        page.screenshot(path=str(artifacts / "19-job-cancelled.png"), full_page=True)

        assert page.request.get(f"{base}/favicon.ico").status == 200
        page.goto(f"{base}/projects/not-a-uuid")
        expect(page.locator("#page-error")).to_be_visible()
        page.goto(f"{base}/runs/{pending['id']}")
        expect(page.locator("#no-answer")).to_be_visible()
        expect(page.locator("#chat")).to_contain_text("What is 2 + 3?")
        browser.close()
