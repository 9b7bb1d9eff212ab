"""Every trace page renders with empty data, many runs and hostile content; filters, facets, keyset pages,
the trace view as a chat, feedback through the feedback model."""

from __future__ import annotations

import re
import uuid

from tests.ui.support import HOSTILE, hostile_trace, llm_trace

ESCAPED = "&lt;script&gt;window.__pwned = 1; alert(1)&lt;/script&gt;"


def no_hostile_markup(html: str) -> None:
    """The hostile text appears only escaped: no <script> or onerror attribute of its own made it through; and the
    page loads nothing from another site (every asset is served by tracetune itself)."""
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script>window.__pwned" not in html
    assert "<img src=x" not in html and 'onerror="window' not in html
    assert len(re.findall(r"<script\b", html)) == 1  # only the page's own htmx.min.js (src=, never inline)
    assert '<script src="/static/htmx.min.js" defer></script>' in html


def test_empty_data_renders_every_page(ui):
    html = ui.page("/")
    assert 'id="no-projects"' in html and "api/v1" in html
    project = ui.store.projects.create(ui.ws.id, "empty-project")
    html = ui.page(f"/projects/{project['id']}")
    assert 'id="no-runs"' in html and "empty-project" in html
    assert 'id="next-page"' not in html
    missing = ui.page(f"/runs/{uuid.uuid4()}", status=404)
    assert 'id="page-error"' in missing and "not found" in missing


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


def test_facets_and_filter_narrow_the_runs(ui):
    ui.ingest(llm_trace("gamma"))
    pid = ui.project_id("gamma")
    assert ui.page(f"/projects/{pid}?run_type=llm").count("<tr>") == 3
    assert ui.page(f"/projects/{pid}?root=1").count("<tr>") == 2
    assert ui.page(f"/projects/{pid}?errors=only").count('id="no-runs"') == 1
    html = ui.page(f"/projects/{pid}?filter=" + "gt(total_tokens, 30)")
    assert html.count("<tr>") == 2


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
