"""The dataset builder (preview with problems, save with lineage, download), "Fine-tune this", the jobs pages
(live status, loss chart, events, checkpoints, cancel), the models page with lineage and the playground."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

import orjson

from tests.dataset_support import ticket_runs
from tests.ui.support import HOSTILE, TOOLS, hostile_trace, llm_trace
from tests.ui.test_pages import ESCAPED, no_hostile_markup
from tracetune.serve.protocol import ChatCompletionRequest
from tracetune.server.openai.chat import install_chat_service


def bad_call_trace(project: str, name: str, i: int) -> list[dict[str, Any]]:
    """An LLM run alone in its trace that calls tool ``name``, which it was not offered."""
    runs = llm_trace(project, i)[1:2]
    call = {"id": "call_9", "type": "function", "function": {"name": name, "arguments": '{"a": 1}'}}
    runs[0].update(trace_id=runs[0]["id"], parent_run_id=None, dotted_order=runs[0]["dotted_order"].split(".")[-1])
    runs[0]["outputs"] = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}
    return runs


def builder_url(project: str, **params: str) -> str:
    from urllib.parse import urlencode

    return "/datasets/new?" + urlencode({"project": project, "model": "tiny", "preview": "1", **params})


def test_empty_dataset_job_and_model_pages(ui):
    assert 'id="no-datasets"' in ui.page("/datasets")
    assert "(no projects yet)" in ui.page("/datasets/new")
    assert 'id="no-jobs"' in ui.page("/jobs")
    models = ui.page("/models")
    assert 'id="no-tuned"' in models
    playground = ui.page("/playground")
    assert 'id="empty-chat"' in playground
    assert "No such fine-tuning job" in ui.page("/jobs/ftjob-nope", status=404)
    assert "not found" in ui.page(f"/datasets/{uuid.uuid4()}", status=404)


def test_builder_previews_examples_and_highlights_problems(tiny_ui):
    ui = tiny_ui
    good = llm_trace("ds")
    warned = bad_call_trace("ds", "multiply", 1)  # a warning: kept, flagged
    wrong = bad_call_trace("ds", "no such name!", 2)  # an error: the record is left out
    ui.ingest(good + warned + wrong)
    html = ui.page(builder_url("ds"))
    assert 'id="preview"' in html
    records = re.findall(r'<div class="record chat([^"]*)">', html)
    assert sorted(records) == [" ", " flagged"]  # the agent trace's two calls merged into one conversation
    assert "<b>call add</b>" in html and "2 + 3 = 5" in html
    warning = re.search(r'<div class="problem warning" data-code="undeclared_tool">(.*?)</div>', html, re.S)
    assert warning and "multiply" in warning.group(1) and f"/runs/{warned[0]['id']}" in warning.group(1)
    error = re.search(r'<div class="problem error" data-code="invalid_function_name">(.*?)</div>', html, re.S)
    assert error and f"/runs/{wrong[0]['id']}" in error.group(1)
    assert "invalid: 1" in html  # counted as skipped


def test_builder_shows_a_bad_filter_at_its_position(tiny_ui):
    tiny_ui.ingest(llm_trace("dsf"))
    html = tiny_ui.page(builder_url("dsf", filter='eq(name "x")'), status=400)
    assert 'id="builder-error"' in html and "at position 8" in html
    assert re.search(r'<span class="caret"> {8}\^</span>', html)
    assert "no project named" in tiny_ui.page(builder_url("nope"), status=404)


def test_save_dataset_from_a_feedback_filter_then_download_and_fine_tune(tiny_ui):
    ui = tiny_ui
    traces = [llm_trace("dsave", i, answer=f"answer {i}") for i in range(3)]
    ui.ingest([r for t in traces for r in t])
    for t in traces[:2]:  # thumbs up on the final LLM call of two traces
        ui.client.post(f"/runs/{t[3]['id']}/feedback", data={"kind": "up"})
    ui.client.post(f"/runs/{traces[2][3]['id']}/feedback", data={"kind": "down"})
    preview = ui.page(builder_url("dsave", feedback_key="user_score", min_score="1"))
    assert len(re.findall(r'<div class="record chat[^"]*">', preview)) == 2
    form = {"project": "dsave", "model": "tiny", "run_type": "llm", "feedback_key": "user_score", "min_score": "1",
            "name": "liked", "filter": ""}  # fmt: skip
    saved = ui.client.post("/datasets", data=form)
    assert saved.status_code == 303, saved.text
    dataset_url = saved.headers["location"]
    page = ui.page(dataset_url)
    assert "liked" in page and "user_score" in page and 'id="lineage"' in page
    assert re.search(r"<dt>Train</dt><dd>2</dd>", page)
    download = ui.client.get(dataset_url + "/download?split=train")
    lines = [orjson.loads(line) for line in download.content.splitlines()]
    assert len(lines) == 2 and {line["messages"][-1]["content"] for line in lines} == {"answer 0", "answer 1"}
    assert all(line["tools"] == TOOLS for line in lines)
    assert 'id="datasets"' in ui.page("/datasets") and ">liked</a>" in ui.page("/datasets")

    bad = ui.client.post(dataset_url + "/fine-tune", data={"model": "tiny", "n_epochs": "lots"})
    assert bad.status_code == 400 and "n_epochs must be a number" in bad.text
    started = ui.client.post(
        dataset_url + "/fine-tune", data={"model": "tiny", "suffix": "liked", "n_epochs": "1", "batch_size": "2"}
    )
    assert started.status_code == 303
    job_id = started.headers["location"].rsplit("/", 1)[1]
    job = ui.store.jobs.get(ui.ws.id, job_id)
    assert job["user_metadata"]["dataset_id"] == dataset_url.rsplit("/", 1)[1]
    assert job["method"]["supervised"]["hyperparameters"] == {"n_epochs": 1, "batch_size": 2,
                                                             "learning_rate_multiplier": "auto"}  # fmt: skip
    uploaded = ui.store.files.blob(ui.ws.id, job["training_file"], ui.app.state.tt.blobs)
    assert uploaded.read_bytes() == download.content
    html = ui.page(f"/jobs/{job_id}")
    assert 'hx-trigger="every 2s"' in html and "validating_files" in html and "liked v1" in html
    assert 'id="no-chart"' in html
    assert f'href="/jobs/{job_id}"' in ui.page(dataset_url)  # the dataset lists the jobs started from it
    listing = ui.page("/jobs")
    assert job_id in listing and 'hx-trigger="every 5s"' in listing  # a live job: the list refreshes itself


def test_builder_makes_preference_pairs_from_thumbs_and_fine_tunes_them_with_dpo(tiny_ui):
    """Records "preference pairs": a thumbs-down run is paired with a thumbs-up run of the same input (shown
    side by side, counted), the saved dataset holds the DPO lines, and "Fine-tune this" starts a DPO job."""
    from tests.dataset_support import chat_run

    ui = tiny_ui
    liked, disliked = chat_run("What is 4 minus 6?", "-2", n=1), chat_run("What is 4 minus 6?", "2", n=2)
    alone = chat_run("What is 1 minus 8?", "7", n=3)  # disliked, and nothing liked answers it
    ui.ingest([liked, disliked, alone])
    for run, kind in ((liked, "up"), (disliked, "down"), (alone, "down")):
        assert ui.client.post(f"/runs/{run['id']}/feedback", data={"kind": kind}).status_code in (200, 303)
    params = {"format": "dpo", "rating_key": "user_score"}
    preview = ui.page(builder_url("default", **params))  # runs without a project land in "default"
    assert preview.count('<div class="pair">') == 1, preview
    preferred, rejected = preview.split('<div class="pair">')[1].split('<div class="non-preferred">')
    assert ">-2<" in preferred and ">2<" in rejected and ">-2<" not in rejected
    assert re.search(r'id="pairs">0 from corrections, 1 from ratings; 1 disliked', preview)
    form = {"project": "default", "model": "tiny", "run_type": "llm", "name": "thumbs-pairs", **params}
    saved = ui.client.post("/datasets", data=form)
    assert saved.status_code == 303, saved.text
    dataset_url = saved.headers["location"]
    page = ui.page(dataset_url)
    assert 'id="ft-beta"' in page and '<div class="pair">' in page
    line = orjson.loads(ui.client.get(dataset_url + "/download").content)
    assert line["preferred_output"] == [{"role": "assistant", "content": "-2"}]
    assert line["non_preferred_output"] == [{"role": "assistant", "content": "2"}]
    started = ui.client.post(dataset_url + "/fine-tune", data={"model": "tiny", "n_epochs": "1", "beta": "0.2"})
    assert started.status_code == 303, started.text
    job = ui.store.jobs.get(ui.ws.id, started.headers["location"].rsplit("/", 1)[1])
    assert job["method"]["type"] == "dpo" and job["method"]["dpo"]["hyperparameters"]["beta"] == 0.2


def test_job_page_draws_loss_checkpoints_and_cancels(tiny_ui):
    ui = tiny_ui
    from tracetune.store.jobs import new_id

    job_id = new_id("ftjob")
    ui.store.jobs.create(
        {"id": job_id, "workspace_id": ui.ws.id, "model": "tiny", "training_file": "file-x", "seed": 1,
         "method": {"type": "supervised"}, "hyperparameters": {"n_epochs": 1}, "output_model": "ft:tiny:default::x"},
        ["Created fine-tuning job", HOSTILE],
    )  # fmt: skip
    metrics = [{"step": s, "total_steps": 4, "train_loss": 3.0 - s * 0.5} for s in range(1, 5)]
    metrics[1]["valid_loss"], metrics[3]["valid_loss"] = 2.8, 2.2
    ui.store.jobs.add_events(job_id, [{"message": f"Step {m['step']}", "type": "metrics", "data": m} for m in metrics])
    checkpoint = {"job_id": job_id, "step_number": 4, "metrics": {"train_loss": 1.0, "valid_loss": 2.2},
                  "fine_tuned_model_checkpoint": "ft:tiny:default::x:ckpt-step-4", "path": "p"}  # fmt: skip
    ui.store.jobs.add_checkpoint(checkpoint)
    html = ui.page(f"/jobs/{job_id}")
    no_hostile_markup(html)
    assert ESCAPED in html
    train = re.search(r'id="train-line" points="([^"]+)"', html)
    valid = re.search(r'id="valid-line" points="([^"]+)"', html)
    assert train and len(train.group(1).split()) == 4 and valid and len(valid.group(1).split()) == 2
    xs = [float(p.split(",")[0]) for p in train.group(1).split()]
    ys = [float(p.split(",")[1]) for p in train.group(1).split()]
    assert xs == sorted(xs) and ys == sorted(ys)  # later steps right; lower loss lower on the chart (larger y)
    assert "ckpt-step-4" in html and "step 4 of 4" in html
    try_it = '<a class="button try-checkpoint" href="/playground?model=ft%3Atiny%3Adefault%3A%3Ax%3Ackpt-step-4">'
    assert try_it in html
    playground = ui.page("/playground?model=ft%3Atiny%3Adefault%3A%3Ax%3Ackpt-step-4")  # offered, and chosen
    assert '<option value="ft:tiny:default::x:ckpt-step-4" selected>' in playground
    assert "ft:tiny:default::x (when it succeeds)" in html
    cancel = r'action="/jobs/[^"]+/cancel" hx-post="[^"]+" hx-target="#job-live" hx-select="#job-live" '
    assert re.search(cancel + r'hx-swap="outerHTML" hx-confirm="Cancel ftjob-', html)  # asks; the page stays
    cancelled = ui.client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 303
    after = ui.page(f"/jobs/{job_id}")
    assert 'data-status="cancelled"' in after and "hx-trigger" not in after and 'id="cancel-job"' not in after
    assert "(when it succeeds)" not in after and "none: the job cancelled" in after
    again = ui.client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 400 and "already been cancelled" in again.text
    assert 'id="margin-chart"' not in after  # a supervised job has no reward margin


def test_a_job_made_with_the_openai_client_links_its_uploaded_file(tiny_ui):
    ui = tiny_ui
    from tracetune.store.jobs import new_id

    line = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
    upload = ui.store.files.create(
        ui.ws.id, ui.app.state.tt.blobs, filename="train.jsonl", purpose="fine-tune", data=line
    )
    job_id = new_id("ftjob")
    ui.store.jobs.create(
        {"id": job_id, "workspace_id": ui.ws.id, "model": "tiny", "training_file": upload["id"], "seed": 1,
         "validation_file": "file-gone", "method": {"type": "supervised"}, "hyperparameters": {"n_epochs": 1},
         "output_model": "ft:tiny:default::f"},
        ["Created fine-tuning job"],
    )  # fmt: skip
    html = ui.page(f"/jobs/{job_id}")
    files = re.search(r'<dd id="job-files">(.*?)</dd>', html, re.S)
    assert files, html
    assert f'training: <a href="/files/{upload["id"]}/content">train.jsonl</a>' in files.group(1)
    assert f"uploaded file <code>{upload['id']}</code>, {len(line)} bytes" in files.group(1)
    assert 'validation: <code>file-gone</code> <span class="muted">(deleted)</span>' in files.group(1)
    content = ui.client.get(f"/files/{upload['id']}/content")
    assert content.status_code == 200 and content.content == line
    missing = ui.client.get("/files/file-nope/content")
    assert missing.status_code == 404 and 'id="page-error"' in missing.text


def test_a_job_with_one_step_draws_its_point_and_a_readable_time_left(tiny_ui):
    ui = tiny_ui
    from tracetune.store.jobs import new_id

    job_id = new_id("ftjob")
    ui.store.jobs.create(
        {"id": job_id, "workspace_id": ui.ws.id, "model": "tiny", "training_file": "file-x", "seed": 1,
         "method": {"type": "supervised"}, "hyperparameters": {"n_epochs": 1}, "output_model": "ft:tiny:default::z"},
        ["Created fine-tuning job"],
    )  # fmt: skip
    step = {"step": 1, "total_steps": 900, "train_loss": 2.5, "eta_s": 1234.4}
    ui.store.jobs.add_events(job_id, [{"message": "Step 1", "type": "metrics", "data": step}])
    html = ui.page(f"/jobs/{job_id}")
    assert re.search(r'<circle class="train-point" cx="32.0" cy="[\d.]+" r="3">', html)  # a line of one point: none
    assert html.count(">step 1<") == 1  # one label on the axis, not "step 1 … step 1"
    assert 'about <span id="eta">20 min 34 s</span> left' in html, html


def test_a_dpo_job_page_shows_its_method_and_reward_margin(tiny_ui):
    ui = tiny_ui
    from tracetune.store.jobs import new_id

    job_id = new_id("ftjob")
    hp = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 0.5, "beta": 0.25}
    ui.store.jobs.create(
        {"id": job_id, "workspace_id": ui.ws.id, "model": "ft:tiny:default:sft:abc", "training_file": "file-x",
         "seed": 1, "method": {"type": "dpo", "dpo": {"hyperparameters": hp}}, "hyperparameters": {"n_epochs": 1},
         "output_model": "ft:tiny:default::y"},
        ["Created fine-tuning job"],
    )  # fmt: skip
    metrics = [
        {"step": s, "total_steps": 3, "train_loss": 0.69 - s * 0.1, "train_reward_margin": 0.1 * s} for s in (1, 2, 3)
    ]
    ui.store.jobs.add_events(job_id, [{"message": f"Step {m['step']}", "type": "metrics", "data": m} for m in metrics])
    html = ui.page(f"/jobs/{job_id}")
    assert re.search(r'id="job-method">dpo \(preference pairs\)', html)
    assert "beta: 0.25" in html and "ft:tiny:default:sft:abc" in html
    margin = re.search(r'id="margin-chart".*?class="train" points="([^"]+)"', html, re.S)
    assert margin and len(margin.group(1).split()) == 3
    ys = [float(p.split(",")[1]) for p in margin.group(1).split()]
    assert ys == sorted(ys, reverse=True)  # a growing margin rises on the chart (smaller y)


def test_an_rft_job_page_draws_its_mean_reward(tiny_ui):
    ui = tiny_ui
    from tracetune.store.jobs import new_id

    job_id = new_id("ftjob")
    grader = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}"}  # fmt: skip
    ui.store.jobs.create(
        {"id": job_id, "workspace_id": ui.ws.id, "model": "tiny", "training_file": "file-x", "seed": 1,
         "method": {"type": "reinforcement", "reinforcement": {"grader": grader, "hyperparameters": {}}},
         "hyperparameters": {"n_epochs": 1}, "output_model": "ft:tiny:default::r"},
        ["Created fine-tuning job"],
    )  # fmt: skip
    metrics = [{"step": s, "total_steps": 3, "train_loss": 0.1, "train_mean_reward": 0.2 * s, "tokens_per_s": 1.0}
               for s in (1, 2, 3)]  # fmt: skip
    metrics[-1]["valid_mean_reward"] = 0.75
    ui.store.jobs.add_events(job_id, [{"message": f"Step {m['step']}", "type": "metrics", "data": m} for m in metrics])
    html = ui.page(f"/jobs/{job_id}")
    assert 'id="job-method">reinforcement (grader exact: string_check)<' in html
    chart = re.search(r'id="reward-chart".*?</svg>', html, re.S)
    assert chart and 'id="margin-chart"' not in html, html
    train = re.search(r'class="train" points="([^"]+)"', chart.group(0))
    ys = [float(p.split(",")[1]) for p in train.group(1).split()]
    assert len(ys) == 3 and ys == sorted(ys, reverse=True)  # a rising reward rises on the chart
    assert len(re.findall(r"<circle ", chart.group(0))) == 1  # the held-out reward at the epoch's end


def test_models_page_shows_lineage_of_a_tuned_model(tiny_ui):
    ui = tiny_ui
    ui.ingest(llm_trace("lin"))
    saved = ui.client.post("/datasets", data={"project": "lin", "model": "tiny", "run_type": "llm", "name": "d1",
                                              "filter": 'eq(name, "ChatOpenAI")'})  # fmt: skip
    dataset_id = saved.headers["location"].rsplit("/", 1)[1]
    started = ui.client.post(f"/datasets/{dataset_id}/fine-tune", data={"model": "tiny", "suffix": "s"})
    job_id = started.headers["location"].rsplit("/", 1)[1]
    job = ui.store.jobs.get(ui.ws.id, job_id)
    with ui.store.db.write() as conn:
        row = {"workspace_id": ui.ws.id, "id": job["output_model"], "base_model": "tiny", "job_id": job_id,
               "adapter_dir": "jobs/x/adapter", "created_at": int(time.time())}  # fmt: skip
        ui.store.models.add(conn, row)
    html = ui.page("/models")
    row = html.split('id="tuned-models"')[1]
    assert job["output_model"] in row and f'href="/jobs/{job_id}"' in row and f'href="/datasets/{dataset_id}"' in row
    assert "eq(name, &#34;ChatOpenAI&#34;)" in row and "runs of lin" in row
    runs_link = re.search(r'<a href="(/projects/[^"]+)">runs of lin</a>', row).group(1).replace("&amp;", "&")
    listed = ui.page(runs_link)  # the runs the dataset was selected from
    assert listed.count('<a href="/runs/') == 2 and "ChatOpenAI" in listed
    assert "tiny" in html.split('id="base-models"')[1]


class FakeChat:
    """A stand-in serving class: answers with a tool call (hostile arguments), then with text."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.engines = self  # the app closes its service's engines at shutdown

    def close(self) -> None:
        pass

    def prepare(self, request: ChatCompletionRequest, workspace_id: Any) -> dict[str, Any]:
        body = request.model_dump(exclude_none=True)
        if body["model"] == "missing":
            from tracetune.errors import NotFound

            raise NotFound("The model 'missing' does not exist", field="model")
        self.bodies.append(body)
        return body

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["messages"][-1]["role"] == "tool":
            message = {"role": "assistant", "content": f"The sum is {body['messages'][-1]['content']} {HOSTILE}"}
        else:
            call = {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def test_playground_offers_tools_shows_calls_and_keeps_the_conversation(ui):
    fake = FakeChat()
    install_chat_service(ui.app, fake)  # type: ignore[arg-type]
    tools = json.dumps(TOOLS)
    first = ui.client.post("/playground", data={"model": "m", "system": "Be brief", "content": "2+3?", "tools": tools})
    assert first.status_code == 200
    assert fake.bodies[0]["tools"] == TOOLS and fake.bodies[0]["messages"][0] == {
        "role": "system",
        "content": "Be brief",
    }
    assert "<b>call add</b>" in first.text and "call_a" in first.text
    history = re.search(r'name="history" value="([^"]*)"', first.text).group(1)
    import html as html_lib

    second = ui.client.post("/playground", data={"model": "m", "history": html_lib.unescape(history), "role": "tool",
                                                 "content": "5", "tools": tools})  # fmt: skip
    assert fake.bodies[1]["messages"][-1] == {"role": "tool", "tool_call_id": "call_a", "content": "5"}
    no_hostile_markup(second.text)
    assert "The sum is 5 " + ESCAPED in second.text and "result of call_a" in second.text
    missing = ui.client.post("/playground", data={"model": "missing", "content": "hi"})
    assert missing.status_code == 404 and 'id="pg-error"' in missing.text
    bad_tools = ui.client.post("/playground", data={"model": "m", "content": "hi", "tools": "[{"})
    assert bad_tools.status_code == 400 and "not valid JSON" in bad_tools.text


def test_the_playground_streams_the_answer_then_the_finished_turn(tiny_ui):
    """``/playground/stream`` on the tiny random model served for real: text deltas as it writes, then the page
    whose conversation holds the same answer; a turn that cannot happen is the page with the error alone."""
    import html as html_lib

    response = tiny_ui.client.post(
        "/playground/stream", data={"model": "tiny", "content": "Say something", "max_tokens": "8"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    deltas, last = lines[:-1], lines[-1]
    assert deltas and all(set(d) == {"delta"} for d in deltas) and set(last) == {"html"}
    page = last["html"]
    assert 'id="playground-area"' in page and "Say something" in page and 'id="pg-error"' not in page
    answer = re.findall(r'<div class="msg assistant">.*?<div class="text">(.*?)</div>', page, re.S)
    assert [html_lib.unescape(a) for a in answer] == ["".join(d["delta"] for d in deltas)]
    whole = tiny_ui.client.post("/playground", data={"model": "tiny", "content": "Say something", "max_tokens": "8"})
    assert re.findall(r'<div class="msg assistant">.*?<div class="text">(.*?)</div>', whole.text, re.S) == answer
    history = json.loads(html_lib.unescape(re.search(r'name="history" value="([^"]*)"', page).group(1)))
    assert [m["role"] for m in history] == ["user", "assistant"]
    missing = tiny_ui.client.post("/playground/stream", data={"model": "missing", "content": "hi"})
    (only,) = [json.loads(line) for line in missing.text.splitlines()]
    assert 'id="pg-error"' in only["html"] and "missing" in only["html"] and "hi</textarea>" in only["html"]


def test_streamed_chunks_add_up_to_the_message():
    from tracetune.server.ui.playground import message_from_chunks

    def chunk(delta: dict[str, Any], index: int = 0) -> dict[str, Any]:
        return {"choices": [{"index": index, "delta": delta}]}

    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "add", "arguments": '{"a": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "2}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "neg", "arguments": "{}"}}]}),
        chunk({"content": "ignored"}, index=1),  # another choice
        chunk({}),
    ]
    assert message_from_chunks(chunks) == {
        "role": "assistant", "content": None,
        "tool_calls": [{"type": "function", "id": "call_1", "function": {"name": "add", "arguments": '{"a": 2}'}},
                       {"type": "function", "id": "call_2", "function": {"name": "neg", "arguments": "{}"}}],
    }  # fmt: skip
    assert message_from_chunks([chunk({"content": "4"}), chunk({"content": "2"})]) == {
        "role": "assistant",
        "content": "42",
    }


def test_hostile_runs_in_dataset_job_and_model_pages(tiny_ui):
    ui = tiny_ui
    ui.ingest(hostile_trace("hostile-ds"))
    html = ui.page(builder_url("hostile-ds", filter=HOSTILE), status=400)
    no_hostile_markup(html)  # the filter text, echoed in the form and the error
    html = ui.page(builder_url("hostile-ds"))
    no_hostile_markup(html)
    assert ESCAPED in html
    saved = ui.client.post("/datasets", data={"project": "hostile-ds", "model": "tiny", "run_type": "llm",
                                              "name": f"d {HOSTILE}"})  # fmt: skip
    assert saved.status_code == 303, saved.text
    for path in ("/datasets", saved.headers["location"]):
        page = ui.page(path)
        no_hostile_markup(page)
        assert "d " + ESCAPED in page
    started = ui.client.post(saved.headers["location"] + "/fine-tune", data={"model": "tiny"})
    job_id = started.headers["location"].rsplit("/", 1)[1]
    job = ui.store.jobs.get(ui.ws.id, job_id)
    with ui.store.db.write() as conn:
        row = {"workspace_id": ui.ws.id, "id": job["output_model"], "base_model": "tiny", "job_id": job_id,
               "adapter_dir": "jobs/x/adapter", "created_at": int(time.time())}  # fmt: skip
        ui.store.models.add(conn, row)
    for path in ("/jobs", f"/jobs/{job_id}", "/models", "/playground"):
        page = ui.page(path)
        no_hostile_markup(page)
    assert "d " + ESCAPED in ui.page("/models")


def test_builder_shows_the_answers_values_and_advice(tiny_ui):
    runs = [run | {"session_name": "tickets"} for run in ticket_runs(40, rare_team="sales")]
    tiny_ui.ingest(runs)
    html = tiny_ui.page(builder_url("tickets"))
    # counts over the runs the preview read (the first ten records: which ones depends on the store's order)
    table = re.search(r'<tr data-argument="route_ticket.team">(.*?)</tr>', html, re.S)
    assert (
        table and len(re.findall(r'<span class="chip">&#34;(billing|tech|sales)&#34;: \d+</span>', table.group(1))) >= 2
    )
    advice = re.findall(r'<div class="error-box diagnostic" data-code="rare_values"><b>(.*?)</b>', html, re.S)
    assert advice and all("fewer than 5 training examples" in a for a in advice)
    assert any(a.startswith(("route_ticket.team: ", "route_ticket.priority: ")) for a in advice)


def test_models_page_sets_rolls_back_and_removes_aliases(tiny_ui):
    ui = tiny_ui
    assert 'id="no-aliases"' in ui.page("/models")
    for target in ("tiny", "smollm2-135m-instruct"):
        assert ui.client.post("/aliases", data={"name": "bot", "model": target}).status_code == 303
    html = ui.page("/models")
    assert re.search(r'data-alias="bot">.*?class="alias-model"><code>smollm2-135m-instruct</code>', html, re.S)
    assert "v1 → tiny · set" in html
    cycle = ui.client.post("/aliases", data={"name": "front", "model": "bot"})
    assert cycle.status_code == 303
    refused = ui.client.post("/aliases", data={"name": "bot", "model": "front"})
    assert (
        refused.status_code == 409
        and "alias cycle: bot → front → bot" in refused.text
        and 'id="alias-error"' in refused.text
    )
    missing = ui.client.post("/aliases", data={"name": "x", "model": "nope"})
    assert missing.status_code == 404 and "nope" in missing.text
    assert ui.client.post("/aliases/bot/rollback").status_code == 303
    assert ui.store.aliases.resolve(ui.ws.id, "front") == "tiny"  # the chain follows the rollback
    assert ui.client.post("/aliases/front/remove").status_code == 303
    assert 'data-alias="front"' not in ui.page("/models")


def test_a_tuned_model_is_deleted_from_the_models_page_unless_an_alias_names_it(tiny_ui):
    ui = tiny_ui
    home = ui.app.state.tt.settings.home
    short = uuid.uuid4().hex[:8]
    model_id = f"ft:tiny:default:gone:{short}"
    (home / "jobs" / short / "adapter").mkdir(parents=True)
    (home / "jobs" / short / "adapter" / "adapter_config.json").write_text("{}")
    with ui.store.db.write() as conn:
        ui.store.models.add(conn, {"workspace_id": ui.ws.id, "id": model_id, "base_model": "tiny", "job_id": None,
                                   "adapter_dir": f"jobs/{short}/adapter", "created_at": int(time.time())})  # fmt: skip
    page = ui.page("/models")
    assert f'action="/models/{quote(model_id)}/delete" hx-boost="true" hx-confirm="Delete {model_id}?' in page
    tiny_row = re.search(r"<code>tiny</code>.*?</tr>", page, re.S)
    assert tiny_row and str(home) not in tiny_row.group(0)  # the weights' path, relative to the data home
    assert ui.client.post("/aliases", data={"name": "keep", "model": model_id}).status_code == 303
    refused = ui.client.post(f"/models/{quote(model_id)}/delete")
    assert refused.status_code == 409 and 'id="model-error"' in refused.text and "alias keep names" in refused.text
    assert ui.client.post("/aliases/keep/remove").status_code == 303
    deleted = ui.client.post(f"/models/{quote(model_id)}/delete")
    assert deleted.status_code == 303 and model_id not in ui.page("/models")
    base = ui.client.post("/models/tiny/delete")
    assert base.status_code == 403 and "only fine-tuned models can be deleted" in base.text


def test_the_dataset_page_marks_the_records_of_corrected_runs(tiny_ui):
    ui = tiny_ui
    runs = llm_trace("corr") + llm_trace("corr", 1, question="What is 4 + 4?")
    ui.ingest(runs)
    fixed = runs[3]["id"]  # the first trace's answer, corrected by a reviewer
    assert ui.client.post(f"/runs/{fixed}/feedback", data={"kind": "correction", "correction": "5."}).status_code == 303
    saved = ui.client.post("/datasets", data={"project": "corr", "model": "tiny", "run_type": "llm",
                                              "use_corrections": "1", "name": "corr"})  # fmt: skip
    assert saved.status_code == 303, saved.text
    page = ui.page(saved.headers["location"])
    marks = re.findall(r'<div class="record chat"[^>]*><div class="muted">line \d+ .*?</div>', page, re.S)
    assert len(marks) == 2 and sum('class="chip good corrected"' in m for m in marks) == 1
    assert any(fixed[-8:] in m and "corrected" in m for m in marks)
    assert "the record holds the correction" in page


def test_dataset_records_are_edited_deleted_and_versions_compared(tiny_ui):
    ui = tiny_ui
    traces = [llm_trace("dedit", i, answer=f"answer {i}") for i in range(3)]
    ui.ingest([r for t in traces for r in t])
    saved = ui.client.post("/datasets", data={"project": "dedit", "model": "tiny", "run_type": "llm", "name": "ed"})
    v1 = saved.headers["location"]

    def answers(url: str) -> list[str]:
        lines = [orjson.loads(line) for line in ui.client.get(url + "/download").content.splitlines()]
        return sorted(line["messages"][-1].get("content") or "(call)" for line in lines)

    page = ui.page(v1)
    ids = re.findall(r'<div class="record chat" id="example-([0-9a-f-]+)">', page)
    assert len(ids) == 3 and page.count("Save as a new version") == 3 and 'id="versions"' in page
    target = next(i for i in ids if "answer 1" in page.split(f'id="example-{i}"')[1].split('class="record chat"')[0])
    outputs = json.loads(re.search(rf'action="{v1}/examples/{target}">\s*<textarea[^>]*>(.*?)</textarea>', page,
                                   re.S).group(1).replace("&#34;", '"'))  # fmt: skip

    bad = ui.client.post(f"{v1}/examples/{target}", data={"outputs": '{"a": 1,\n  oops}'})
    assert bad.status_code == 400 and "outputs is not JSON" in bad.text and "line 2" in bad.text
    assert 'id="edit-error"' in bad.text and "oops" in bad.text  # the text typed is kept for fixing
    assert ui.client.post(f"{v1}/examples/{target}", data={"outputs": "[1]"}).status_code == 400
    broken = ui.client.post(f"{v1}/examples/{target}", data={"outputs": '{"nothing": "to train on"}'})
    assert broken.status_code == 400 and "would no longer train" in broken.text
    assert answers(v1) == ["answer 0", "answer 1", "answer 2"]  # nothing written by the refusals

    edited_outputs = json.loads(json.dumps(outputs).replace("answer 1", "answer one, corrected"))
    edited = ui.client.post(f"{v1}/examples/{target}", data={"outputs": json.dumps(edited_outputs)})
    assert edited.status_code == 303
    v2 = edited.headers["location"].split("?")[0]
    assert v2 != v1 and answers(v2) == ["answer 0", "answer 2", "answer one, corrected"]
    assert answers(v1) == ["answer 0", "answer 1", "answer 2"]  # the old version is kept as it was
    v2_page = ui.page(edited.headers["location"])
    assert 'id="edited"' in v2_page and 'id="edited-since"' in v2_page and ">dedit</a>" in v2_page  # lineage kept
    stale = ui.client.post(f"{v1}/examples/{target}/delete")
    assert stale.status_code == 409 and "edit the records of the newest version" in stale.text
    assert 'id="older-version"' in ui.page(v1) and "Save as a new version" not in ui.page(v1)

    gone = next(i for i in ids if i != target)
    deleted = ui.client.post(f"{v2}/examples/{gone}/delete")
    assert deleted.status_code == 303
    v3 = deleted.headers["location"].split("?")[0]
    assert len(answers(v3)) == 2 and len(answers(v2)) == 3

    compare = ui.page(f"{v1}/compare?to={v3.rsplit('/', 1)[1]}")
    assert re.search(
        r"0 added</span> <span class=\"chip bad\">1 removed</span> <span class=\"chip\">1 changed", compare
    )
    changed = compare.split(f'id="changed-{target}"')[1]
    assert "outputs changed" in changed and "answer 1" in changed and "answer one, corrected" in changed
    assert 'id="no-changes"' in ui.page(f"{v3}/compare?to={v3.rsplit('/', 1)[1]}")
    other = ui.client.post("/datasets", data={"project": "dedit", "model": "tiny", "run_type": "llm", "name": "o"})
    elsewhere = ui.client.get(f"{v1}/compare?to={other.headers['location'].rsplit('/', 1)[1]}")
    assert elsewhere.status_code == 400 and "same dataset" in elsewhere.text
