"""Every trace page renders with empty data, many runs and hostile content; filters, facets, keyset pages,
the trace view as a chat, feedback through the feedback model."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime

import pytest

from tests.ui.support import HOSTILE, hostile_trace, llm_trace
from tracetune.errors import InvalidInput

ESCAPED = "&lt;script&gt;window.__pwned = 1; alert(1)&lt;/script&gt;"


def no_hostile_markup(html: str) -> None:
    """The hostile text appears only escaped: no <script> or onerror attribute of its own made it through; and the
    page loads nothing from another site (every asset is served by tracetune itself)."""
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script>window.__pwned" not in html
    assert "<img src=x" not in html and 'onerror="window' not in html
    scripts = re.findall(r"<script\b[^>]*>", html)  # only the page's own files (src=, never inline)
    assert scripts[:2] == ['<script src="/static/htmx.min.js" defer>', '<script src="/static/ui.js" defer>']
    assert all(re.fullmatch(r'<script src="/static/[a-z]+(\.min)?\.js" defer>', tag) for tag in scripts), scripts


def test_empty_data_renders_every_page(ui):
    html = ui.page("/")
    assert 'id="no-projects"' in html and "api/v1" in html
    project = ui.store.projects.create(ui.ws.id, "empty-project")
    html = ui.page(f"/projects/{project['id']}")
    assert 'id="no-runs"' in html and "empty-project" in html
    assert 'id="next-page"' not in html
    missing = ui.page(f"/runs/{uuid.uuid4()}", status=404)
    assert 'id="page-error"' in missing and "not found" in missing


def test_a_malformed_or_unknown_page_is_an_html_error_page_and_the_icon_is_served(ui):
    bad = ui.client.get("/projects/not-a-uuid")
    assert bad.status_code == 404 and bad.headers["content-type"].startswith("text/html")
    assert 'id="page-error"' in bad.text and "project_id" in bad.text and "UUID" in bad.text
    assert "Not found" in bad.text
    number = ui.client.get("/automations/any/firings/first")
    assert number.status_code == 404 and 'id="page-error"' in number.text and "number" in number.text
    nowhere = ui.client.get("/no/such/page")
    assert (
        nowhere.status_code == 404 and 'id="page-error"' in nowhere.text and "no page at /no/such/page" in nowhere.text
    )
    assert ui.client.get("/api/v1/no-such-route").json() == {"detail": "Not Found"}  # the APIs keep their shape
    api = ui.client.get("/api/v1/runs/not-a-uuid")
    assert api.status_code == 400 and api.headers["content-type"] == "application/json"
    icon = ui.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml" and b"<svg" in icon.content
    assert '<link rel="icon" href="/static/favicon.svg"' in ui.page("/")


def test_a_pending_llm_run_shows_its_prompt_as_a_chat_waiting_for_the_answer(ui):
    runs = llm_trace("pending")
    pending = {k: v for k, v in runs[3].items() if k not in ("end_time", "outputs")}  # posted, not yet patched
    ui.ingest([*runs[:3], pending])
    html = ui.page(f"/runs/{pending['id']}")
    assert 'id="chat"' in html and 'id="no-answer"' in html and "No answer yet: the run is still running." in html
    assert "You add numbers." in html and "· answer" not in html  # the prompt, no message taken for an answer
    assert "no_output" not in html and 'id="run-inputs"' not in html  # neither the code nor raw JSON panels
    complete = ui.page(f"/runs/{runs[1]['id']}")
    assert "Not shown as a chat" not in complete  # a complete run: the chat, with its answer
    assert "· answer" in complete


def test_an_llm_run_opens_in_the_playground_with_its_prompt_and_tools(ui):
    import html as markup

    runs = llm_trace("theta")
    ui.ingest(runs)
    trace = ui.page(f"/runs/{runs[1]['id']}")
    assert f'id="open-playground" href="/playground?run={runs[1]["id"]}"' in trace
    assert "· 25 tok" in trace and 'class="status-success" title="success">●' in trace  # each node: status, tokens
    first = ui.page(f"/playground?run={runs[1]['id']}")  # its prompt ends with the user's question: in the box
    history = json.loads(markup.unescape(re.search(r'name="history" value="([^"]*)"', first).group(1)))
    assert history == [{"role": "system", "content": "You add numbers."}]
    assert ">What is 2 + 3?</textarea>" in first and "&#34;name&#34;: &#34;add&#34;" in first  # the tools offered
    second = ui.page(f"/playground?run={runs[3]['id']}")  # its prompt ends with the tool's result: all history
    history = json.loads(markup.unescape(re.search(r'name="history" value="([^"]*)"', second).group(1)))
    assert [m["role"] for m in history] == ["system", "user", "assistant", "tool"]
    assert 'id="pg-content" rows="3" placeholder="Your message"></textarea>' in second
    assert 'id="page-error"' in ui.page(f"/playground?run={uuid.uuid4()}", status=404)
    chain = ui.page(f"/playground?run={runs[0]['id']}", status=400)  # the agent's chain run: no chat prompt
    assert "has no chat prompt" in chain


def test_an_llm_run_shows_its_model_and_settings(ui):
    runs = llm_trace("kappa")
    params = {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 64, "stop": None, "tools": [{"x": 1}]}
    runs[1]["extra"] = {"metadata": {"ls_model_name": "gpt-4o-mini"}, "invocation_params": params}
    ui.ingest(runs)
    html = ui.page(f"/runs/{runs[1]['id']}")
    shown = re.search(r'<dd id="run-model">(.*?)</dd>', html, re.S)
    assert shown and shown.group(1) == (
        '<code>gpt-4o-mini</code> <span class="chip">temperature: 0.2</span> <span class="chip">max_tokens: 64</span>'
    )
    assert 'id="run-model"' not in ui.page(f"/runs/{runs[2]['id']}")  # the tool run: no model


def test_ticked_runs_are_rated_at_once_and_the_table_comes_back(ui):
    runs = llm_trace("lambda")
    ui.ingest(runs)
    pid = ui.project_id("lambda")
    page = ui.page(f"/projects/{pid}?run_type=llm")
    assert page.count('type="checkbox" name="run_id"') == 2 and 'name="back" value="/projects/' in page
    back = f"/projects/{pid}?run_type=llm"
    llm_ids = [runs[1]["id"], runs[3]["id"]]
    rated = ui.client.post(f"/projects/{pid}/rate", data={"kind": "up", "run_id": llm_ids, "back": back})
    assert rated.status_code == 303 and rated.headers["location"] == back
    scores = {str(f["run_id"]): f["score"] for f in ui.store.feedback.list(ui.ws.id, keys=["user_score"])}
    assert scores == dict.fromkeys(llm_ids, 1.0)
    ui.client.post(f"/projects/{pid}/rate", data={"kind": "down", "run_id": llm_ids[:1], "back": back})
    assert ui.page(f"/projects/{pid}?feedback=down").count("<tr>") == 2  # one run changed its mind: header + 1
    none = ui.client.post(f"/projects/{pid}/rate", data={"kind": "up", "back": back})
    assert none.status_code == 400 and 'id="page-error"' in none.text and "tick the runs" in none.text
    odd = ui.client.post(f"/projects/{pid}/rate", data={"kind": "meh", "run_id": llm_ids})
    assert odd.status_code == 400 and "unknown rating" in odd.text
    elsewhere = ui.client.post(f"/projects/{pid}/rate", data={"kind": "up", "run_id": llm_ids, "back": "//evil"})
    assert elsewhere.headers["location"] == "/"


def test_a_run_is_added_to_a_dataset_as_an_example_that_reads_as_a_conversation(ui):
    from tracetune.convert.examples import record_from_example

    runs = llm_trace("mu")
    ui.ingest(runs)
    first = ui.client.post(f"/runs/{runs[1]['id']}/add-to-dataset", data={"dataset": "held-out calls"})
    assert first.status_code == 303 and first.headers["location"] == f"/runs/{runs[1]['id']}?added=held-out%20calls"
    assert 'id="added">added to held-out calls<' in ui.page(first.headers["location"])
    ui.client.post(f"/runs/{runs[3]['id']}/add-to-dataset", data={"dataset": "held-out calls"})
    (dataset,) = ui.store.datasets.list_datasets(ui.ws.id, name="held-out calls")
    examples = ui.store.examples.list(ui.ws.id, dataset_id=dataset["id"])
    assert sorted(str(e["source_run_id"]) for e in examples) == sorted([runs[1]["id"], runs[3]["id"]])
    by_run = {str(e["source_run_id"]): record_from_example(dict(e)) for e in examples}
    call = by_run[runs[1]["id"]]["messages"][-1]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == "add"
    assert by_run[runs[3]["id"]]["messages"][-1]["content"] == "2 + 3 = 5"
    assert '<option value="held-out calls">' in ui.page(f"/runs/{runs[2]['id']}")  # offered on every run page
    empty = ui.client.post(f"/runs/{runs[1]['id']}/add-to-dataset", data={"dataset": " "})
    assert empty.status_code == 400 and 'id="dataset-error"' in empty.text and "name the dataset" in empty.text


def test_ticked_runs_are_added_to_a_dataset_as_one_version(ui):
    from tracetune.convert.examples import record_from_example

    runs = llm_trace("xi")
    ui.ingest(runs)
    pid = ui.project_id("xi")
    back = f"/projects/{pid}?run_type=llm"
    page = ui.page(back)
    assert 'formaction="/projects/' in page and 'id="bulk-dataset"' in page
    llm_ids = [runs[1]["id"], runs[3]["id"]]
    added = ui.client.post(f"/projects/{pid}/add-to-dataset", data={"dataset": "from the table", "run_id": llm_ids,
                                                                     "back": back})  # fmt: skip
    assert added.status_code == 303 and added.headers["location"].startswith(back + "&added=")
    (dataset,) = ui.store.datasets.list_datasets(ui.ws.id, name="from the table")
    examples = ui.store.examples.list(ui.ws.id, dataset_id=dataset["id"])
    assert sorted(str(e["source_run_id"]) for e in examples) == sorted(llm_ids)
    assert record_from_example(dict(examples[0]))["messages"][-1]["role"] == "assistant"
    versions = ui.store.datasets.versions(ui.ws.id, dataset["id"])
    assert len(versions) == 1  # both runs in one version
    notice = ui.page(added.headers["location"])
    assert re.search(
        r'id="added">Added 2 runs to <a href="/datasets/[0-9a-f-]+">from the table</a> \(version 1\)', notice
    )
    assert '<option value="from the table">' in notice  # offered for the next ticks
    ui.client.post(f"/projects/{pid}/add-to-dataset", data={"dataset": "from the table", "run_id": llm_ids[:1]})
    assert len(ui.store.datasets.versions(ui.ws.id, dataset["id"])) == 2
    none = ui.client.post(f"/projects/{pid}/add-to-dataset", data={"dataset": "from the table", "back": back})
    assert none.status_code == 400 and "tick the runs to add to a dataset first" in none.text
    nameless = ui.client.post(f"/projects/{pid}/add-to-dataset", data={"dataset": " ", "run_id": llm_ids})
    assert nameless.status_code == 400 and "name the dataset" in nameless.text


def test_projects_list_shows_counts_and_last_activity(ui):
    ui.ingest(llm_trace("alpha") + llm_trace("alpha", 5))
    html = ui.page("/")
    row = re.search(
        r"<tr><td><a href=\"/projects/[^\"]+\">alpha</a></td><td class=\"num\">(\d+)</td>\s*<td>([^<]*)</td>", html
    )
    assert row, html
    assert row.group(1) == "8" and row.group(2) == "2026-11-21 08:00:05"


def test_runs_table_columns_and_trace_link(ui):
    ui.ingest(llm_trace("beta"))
    pid = ui.project_id("beta")
    html = ui.page(f"/projects/{pid}")
    assert html.count("<tr>") == 5  # header + 4 runs
    assert "ChatOpenAI" in html and 'class="status-success"' in html and "400 ms" in html and ">37<" in html
    assert "2026-11-21 08:00:00" in html
    previews = re.findall(r'<td class="preview">(.*?)</td>\s*<td class="preview">(.*?)</td>', html)
    assert sorted(previews) == sorted([
        ("What is 2 + 3?", "5"),  # the agent: its inputs' and outputs' text
        ("What is 2 + 3?", "add({&#34;a&#34;: 2, &#34;b&#34;: 3})"),  # the first model call: its tool call
        ("{&#34;a&#34;: 2, &#34;b&#34;: 3}", "{&#34;output&#34;: 5}"),  # the tool: no text, its JSON
        ("What is 2 + 3?", "2 + 3 = 5"),  # the second model call: the question it answers, its answer
    ])  # fmt: skip


def test_runs_sort_by_latency_and_tokens_across_pages(ui):
    from tracetune.query.runs_query import RunQuery, query_runs

    runs = [r for i in range(3) for r in llm_trace("sorted", i)]
    pending = {**llm_trace("sorted", 9)[0], "end_time": None, "outputs": None}  # no latency yet: sorts last
    ui.ingest([*runs, pending])
    pid = ui.project_id("sorted")
    latency = {r["id"]: (_ms(r["end_time"]) - _ms(r["start_time"])) if r.get("end_time") else -1
               for r in [*runs, pending]}  # fmt: skip
    tokens = {r["id"]: r.get("total_tokens") or -1 for r in [*runs, pending]}

    def shown(order: str) -> list[str]:
        return re.findall(r'<a href="/runs/([0-9a-f-]+)">', ui.page(f"/projects/{pid}?order={order}"))

    slowest = shown("latency")
    assert [latency[i] for i in slowest] == sorted(latency.values(), reverse=True) and slowest[-1] == pending["id"]
    assert [latency[i] for i in shown("latency-asc")] == sorted(latency.values())
    assert [tokens[i] for i in shown("tokens")] == sorted(tokens.values(), reverse=True)
    page = ui.page(f"/projects/{pid}?order=latency")
    assert 'aria-sort="descending"><a class="sort" id="sort-latency" href="/projects/' in page
    assert re.search(r'id="sort-latency" href="/projects/[^"]+\?order=latency-asc">Latency ▼', page)  # flips
    assert "selected>slowest first</option>" in page
    assert [latency[i] for i in shown("nonsense")] == [latency[i] for i in shown("")]  # unknown: newest first

    pages, cursor = [], None  # keyset paging over (latency, id): every run once, in order
    while True:
        page_ = query_runs(ui.store, ui.ws.id, RunQuery(project_ids=[uuid.UUID(pid)], sort="latency", limit=4,
                                                        cursor=cursor, select=["id"]))  # fmt: skip
        pages.extend(r["id"] for r in page_.runs)
        if not (cursor := page_.next_cursor):
            break
    assert len(pages) == len(set(pages)) == 13
    assert [latency[str(i)] for i in pages] == sorted(latency.values(), reverse=True)
    with pytest.raises(InvalidInput, match="sort must be one of"):
        query_runs(ui.store, ui.ws.id, RunQuery(project_ids=[uuid.UUID(pid)], sort="cost"))


def test_runs_table_and_trace_show_costs_from_the_usage_or_the_price_table(ui):
    runs = llm_trace("costly")
    usage = {"input_tokens": 20000, "output_tokens": 5000, "total_tokens": 25000}
    runs[1]["outputs"]["usage_metadata"] = usage  # the first call's usage as LangChain reports it, no cost
    runs[3]["outputs"]["usage_metadata"] = {**usage, "total_cost": 0.5}  # the second's with its cost
    ui.ingest(runs)
    pid = ui.project_id("costly")
    costs = re.findall(r'<td class="num cost">([^<]*)</td>', ui.page(f"/projects/{pid}"))
    assert sorted(costs) == ["", "", "", "$0.50"]  # no price table: only the cost the usage reports
    ui.app.state.tt.settings.model_prices = {"gpt-4o-mini": (0.15, 0.6)}  # USD per 1M tokens in / out
    try:
        page = ui.page(f"/projects/{pid}")
        costs = re.findall(r'<td class="num cost">([^<]*)</td>', page)
        assert sorted(costs) == ["", "", "$0.006", "$0.50"]  # 20k x 0.15 + 5k x 0.6 per 1M; the reported wins
        assert '<th class="num">Cost</th>' in page and 'data-column="Cost" checked> Cost' in page  # and chooser
        assert 'id="run-cost">$0.006<' in ui.page(f"/runs/{runs[1]['id']}")
    finally:
        ui.app.state.tt.settings.model_prices = {}


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def test_facets_and_filter_narrow_the_runs(ui):
    ui.ingest(llm_trace("gamma"))
    pid = ui.project_id("gamma")
    assert ui.page(f"/projects/{pid}?run_type=llm").count("<tr>") == 3
    assert ui.page(f"/projects/{pid}?root=1").count("<tr>") == 2
    assert ui.page(f"/projects/{pid}?errors=only").count('id="no-runs"') == 1
    html = ui.page(f"/projects/{pid}?filter=" + "gt(total_tokens, 30)")
    assert html.count("<tr>") == 2


def test_the_dataset_link_carries_every_facet_and_is_redrawn_with_the_runs(ui):
    import html as markup
    from urllib.parse import parse_qs, urlsplit

    ui.ingest(llm_trace("zeta"))
    pid = ui.project_id("zeta")

    def link(query: str) -> dict[str, list[str]]:
        page = ui.page(f"/projects/{pid}?{query}")
        found = re.search(r'id="build-dataset" href="([^"]+)"', page)
        assert found and page.index('id="runs-area"') < found.start()  # inside what Apply refreshes in place
        return parse_qs(urlsplit(markup.unescape(found.group(1))).query, keep_blank_values=True)

    assert link("") == {"project": ["zeta"], "run_type": [""], "filter": [""]}
    carried = link("run_type=llm&errors=none&feedback=up&root=1&filter=gt(total_tokens,+30)")
    assert carried["run_type"] == ["llm"]
    assert carried["filter"] == [
        'and(gt(total_tokens, 30), and(eq(feedback_key, "user_score"), eq(feedback_score, 1)), eq(error, false), '
        "eq(parent_run_id, null))"
    ]
    assert link("errors=only")["filter"] == ["eq(error, true)"]
    (recent,) = link("since=24h")["filter"]  # the time range, as of now
    assert re.fullmatch(r'gte\(start_time, "\d{4}-\d\d-\d\dT[\d:.]+\+00:00"\)', recent), recent


def test_a_bad_filter_is_shown_inline_at_its_position(ui):
    ui.ingest(llm_trace("delta"))
    pid = ui.project_id("delta")
    text = 'and(eq(run_type, "llm"), gt(latency 1))'
    html = ui.page(f"/projects/{pid}?filter=" + text.replace(" ", "+"), status=400)
    box = re.search(r'<div class="error-box" id="filter-error" role="alert">(.*?)</div>', html, re.S)
    assert box, html
    position = text.index("1))")
    assert f"at position {position}" in box.group(1)
    caret = re.search(r'<span class="caret">( *)\^</span>', box.group(1))
    assert caret and len(caret.group(1)) == position
    unknown = ui.page(f"/projects/{pid}?filter=eq(colour,+1)", status=400)
    assert "unknown field &#39;colour&#39;" in unknown and "at position 3" in unknown


def test_pages_follow_the_keyset_cursor_without_offsets(ui):
    runs = []
    for i in range(120):
        runs += llm_trace("paged", i)[:1]
    ui.ingest(runs)
    pid = ui.project_id("paged")
    seen: list[str] = []
    url = f"/projects/{pid}"
    while url:
        html = ui.page(url)
        seen += re.findall(r'<a href="/runs/([0-9a-f-]+)">agent</a>', html)
        nxt = re.search(r'id="next-page" href="\?([^"]+)"', html)
        url = f"/projects/{pid}?{nxt.group(1).replace('&amp;', '&')}" if nxt else ""
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen == [r["id"] for r in sorted(runs, key=lambda r: r["start_time"], reverse=True)]
    # back from the last page (3 of 3) with "Previous": pages 2, then 1, the same runs as going forward
    back: list[list[str]] = []
    while True:
        assert f'id="page-number">page {3 - len(back)}<' in html
        back.append(re.findall(r'<a href="/runs/([0-9a-f-]+)">agent</a>', html))
        prev = re.search(r'id="previous-page" href="\?([^"]+)"', html)
        if not prev:
            break
        html = ui.page(f"/projects/{pid}?{prev.group(1).replace('&amp;', '&')}")
    assert [i for page in reversed(back) for i in page] == seen and len(back) == 3
    oldest = ui.page(f"/projects/{pid}?order=asc")
    assert re.findall(r'<a href="/runs/([0-9a-f-]+)">agent</a>', oldest)[:3] == seen[::-1][:3]
    assert 'id="no-runs"' in ui.page(f"/projects/{pid}?since=1h")  # the traces are from 2026-11-21
    assert html.count('<a href="/runs/') == ui.page(f"/projects/{pid}?since=&trail=junk").count('<a href="/runs/')


def test_the_runs_views_totals_load_after_the_table(ui):
    ui.ingest(llm_trace("nu") + llm_trace("nu", 1))
    pid = ui.project_id("nu")
    page = ui.page(f"/projects/{pid}?run_type=llm")
    found = re.search(r'<div id="run-stats" hx-get="([^"]+)" hx-trigger="load"', page)
    assert found and found.group(1) == f"/projects/{pid}/stats?run_type=llm"
    stats = ui.page(found.group(1))
    assert '<b id="run-count">4</b> runs' in stats  # two traces, two LLM calls each
    assert "124 tokens" in stats and " 0% errors" in stats and "mean latency 350 ms" in stats, stats
    assert '<b id="run-count">8</b>' in ui.page(f"/projects/{pid}/stats")
    assert 'id="run-count"' not in ui.page(f"/projects/{pid}/stats?filter=eq(")  # a bad filter: no totals


def test_the_runs_table_names_the_model_and_can_refresh_itself(ui):
    ui.ingest(llm_trace("iota"))
    pid = ui.project_id("iota")
    html = ui.page(f"/projects/{pid}")
    assert "<td><code>gpt-4o-mini</code></td>" in html  # the first model call's ls_model_name
    assert 'title="20 prompt + 5 completion">25<' in html
    assert '<span class="muted trace-tokens" title="the whole trace\'s tokens">Σ 62</span>' in html  # the root
    assert "data-live" not in html
    live = ui.page(f"/projects/{pid}?live=1&run_type=llm")
    assert re.search(r'<div id="runs-area" hx-get="/projects/[^"]+live=1[^"]*" hx-trigger="every 5s"', live)


def test_trace_view_shows_tree_timing_and_chat_with_tools(ui):
    runs = llm_trace("eps")
    ui.ingest(runs)
    root, llm1, tool, llm2 = runs
    html = ui.page(f"/runs/{llm1['id']}")
    tree = re.findall(r'<a href="/runs/([0-9a-f-]+)">', html.split('id="run-tree"')[1].split("</div>\n<div>")[0])
    assert tree == [root["id"], llm1["id"], tool["id"], llm2["id"]]  # depth-first by start
    bars = re.findall(r'style="left: ([\d.]+)%; width: ([\d.]+)%"', html)
    assert bars[0] == ("0.0", "100.0") and bars[2] == ("35.56", "5.56")  # tool: 320..370 ms of 900
    assert 'id="chat"' in html
    assert '<div class="role">system</div>' in html and "You add numbers." in html
    assert "<b>call add</b>" in html and "&#34;a&#34;: 2" in html  # arguments pretty-printed (escaped quotes)
    assert '<b>add</b> <span class="muted">Add two numbers</span>' in html  # the tools offered
    assert 'id="raw-json"' in html
    answer = ui.page(f"/runs/{llm2['id']}")
    assert "result of call_1" in answer and "2 + 3 = 5" in answer
    chain = ui.page(f"/runs/{root['id']}")
    assert 'id="run-inputs"' in chain and "What is 2 + 3?" in chain


def test_thumbs_and_corrections_are_stored_as_feedback(ui):
    runs = llm_trace("zeta")
    ui.ingest(runs)
    llm = runs[3]
    rid = uuid.UUID(llm["id"])
    response = ui.client.post(f"/runs/{rid}/feedback", data={"kind": "up"})
    assert response.status_code == 303 and response.headers["location"] == f"/runs/{rid}"
    ui.client.post(f"/runs/{rid}/feedback", data={"kind": "down"})
    ui.client.post(f"/runs/{rid}/feedback", data={"kind": "up"})
    [thumbs] = ui.store.feedback.list(ui.ws.id, run_ids=[rid], keys=["user_score"])
    assert thumbs["score"] == 1.0 and str(thumbs["trace_id"]) == llm["trace_id"]  # one, updated in place

    bad = ui.client.post(f"/runs/{rid}/feedback", data={"kind": "correction", "correction": "{not json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.text and "{not json" in bad.text
    ok = ui.client.post(f"/runs/{rid}/feedback", data={"kind": "correction", "correction": "It is 5."})
    assert ok.status_code == 303
    [fix] = ui.store.feedback.list(ui.ws.id, run_ids=[rid], keys=["correction"])
    assert fix["correction"] == "It is 5."
    html = ui.page(f"/runs/{rid}")
    assert 'data-feedback-key="user_score"' in html and ">It is 5.</textarea>" in html
    pid = ui.project_id("zeta")
    assert ui.page(f"/projects/{pid}?feedback=up").count("<tr>") == 2
    assert 'id="no-runs"' in ui.page(f"/projects/{pid}?feedback=down")  # changed back to up: one rating per run
    assert ui.page(f"/projects/{pid}?feedback=corrected").count("<tr>") == 2
    # the correction beside the answer, and where they differ; chips that read as words
    assert 'id="correction-shown"' in html and "<li>&#39;2 + 3 = 5&#39;, not &#39;It is 5.&#39;</li>" in html
    assert "(correction)" not in html and 'data-feedback-key="correction" title="' in html
    runs_page = ui.page(f"/projects/{pid}?feedback=corrected")
    assert "correction: \u2013" not in runs_page and '<span class="chip">correction</span>' in runs_page


def test_a_tool_call_correction_shows_each_argument_it_changed(ui):
    runs = llm_trace("eta")
    ui.ingest(runs)
    rid = runs[1]["id"]  # the call add(a=2, b=3)
    call = {"type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 4}'}}
    fixed = {"role": "assistant", "content": None, "tool_calls": [call]}
    response = ui.client.post(f"/runs/{rid}/feedback", data={"kind": "correction", "correction": json.dumps(fixed)})
    assert response.status_code == 303, response.text
    html = ui.page(f"/runs/{rid}")
    diff = re.search(r'<ul class="diff" id="correction-diff">(.*?)</ul>', html, re.S)
    assert diff and diff.group(1) == "<li>b: 3, not 4</li>", html


def test_hostile_content_is_shown_as_text_everywhere(ui):
    runs = hostile_trace(f"proj {HOSTILE}")
    ui.ingest(runs)
    home = ui.page("/")
    no_hostile_markup(home)
    assert "proj " + ESCAPED in home
    pid = ui.project_id(f"proj {HOSTILE}")
    listing = ui.page(f"/projects/{pid}")
    no_hostile_markup(listing)
    assert "evil " + ESCAPED in listing
    trace = ui.page(f"/runs/{runs[0]['id']}")
    no_hostile_markup(trace)
    assert trace.count(ESCAPED) >= 5  # name, tag, message, answer, tool description, arguments, raw JSON
    csp = ui.client.get(f"/runs/{runs[0]['id']}").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    bad_filter = ui.page(f"/projects/{pid}?filter=" + HOSTILE.replace(" ", "+"), status=400)
    no_hostile_markup(bad_filter)


def test_ten_thousand_runs(tiny_ui):
    ui = tiny_ui
    runs = []
    for i in range(2500):
        runs += llm_trace("big", i)
    for start in range(0, len(runs), 2000):
        ui.ingest(runs[start : start + 2000])
    assert '<td class="num">10000</td>' in ui.page("/")
    pid = ui.project_id("big")
    html = ui.page(f"/projects/{pid}")
    assert html.count("<tr>") == 51 and 'id="next-page"' in html
    assert ui.page(f"/projects/{pid}?run_type=tool&root=").count("<tr>") == 51
    assert 'id="chat"' in ui.page(f"/runs/{runs[-1]['id']}")
    builder = ui.page("/datasets/new?project=big&model=tiny&preview=1")
    assert len(re.findall(r'<div class="record chat[^"]*">', builder)) == 10  # the first 10 examples, then it stops


def test_the_correction_editor_starts_from_the_runs_answer(ui):
    runs = llm_trace("eta")
    ui.ingest(runs)
    assert ">2 + 3 = 5</textarea>" in ui.page(f"/runs/{runs[3]['id']}")
    with_call = ui.page(f"/runs/{runs[1]['id']}")
    editor = re.search(r'<textarea name="correction" rows="6" id="correction-text">(.*?)</textarea>', with_call, re.S)
    assert editor and "&#34;tool_calls&#34;" in editor.group(1) and "&#34;name&#34;: &#34;add&#34;" in editor.group(1)
