"""The review-queue pages: the list with waiting/done counts, and a reviewer working through a queue — each waiting
LLM run shown as its trace page shows it, rated or corrected there (back to the queue), marked done, the next one
shown, until nothing waits. The keyboard path runs in a real Chromium (tests/ui/test_browser.py's browser)."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.ui.support import llm_trace
from tests.ui.test_browser import CHROMIUM, _need_browser


def queued(ui, n: int = 2) -> tuple[dict, list[dict]]:
    runs = [r for i in range(n) for r in llm_trace("review", i, question=f"What is {i} + 3?")]
    ui.ingest(runs)
    llm = [r for r in runs if r["run_type"] == "llm" and r["inputs"]["messages"][-1]["role"] == "user"]
    queue = ui.store.annotation_queues.create(ui.ws.id, {"name": "math", "rubric_instructions": "Check the sums"})
    ui.store.annotation_queues.add(
        ui.ws.id, queue["id"], [{"item_type": "RUN", "run_id": uuid.UUID(r["id"])} for r in llm]
    )
    return queue, llm


def test_queue_list_and_an_empty_queue(ui):
    assert 'id="no-queues"' in ui.page("/queues")
    queued(ui)
    html = ui.page("/queues")
    assert re.search(
        r'<a href="/queues/[^"]+">math</a></td><td></td>\s*<td class="num">2</td><td class="num">0</td>', html
    )
    empty = ui.store.annotation_queues.create(ui.ws.id, {"name": "nothing"})
    assert 'id="queue-empty"' in ui.page(f"/queues/{empty['id']}")
    assert 'id="page-error"' in ui.page(f"/queues/{uuid.uuid4()}", status=404)


def test_a_reviewer_rates_corrects_and_moves_on(ui):
    queue, llm = queued(ui)
    url = f"/queues/{queue['id']}"
    html = ui.page(url)
    assert "What is 0 + 3?" in html and "2 waiting · 0 done" in html and "Check the sums" in html
    assert 'name="back" value="/queues/' in html and "j/k next/previous run" in html
    assert 'id="queue-skip"' in html and "What is 1 + 3?" in ui.page(url + "?skip=1")
    assert f'href="{url}?skip=1" id="queue-previous"' in html  # wraps around to the last waiting run
    assert f'href="{url}?skip=0" id="queue-previous"' in ui.page(url + "?skip=1")

    first = llm[0]["id"]
    rated = ui.client.post(f"/runs/{first}/feedback", data={"kind": "down", "back": f"{url}?skip=0"})
    assert rated.status_code == 303 and rated.headers["location"] == f"{url}?skip=0"
    fixed = ui.client.post(f"/runs/{first}/feedback", data={"kind": "correction", "correction": "3", "back": url})
    assert fixed.status_code == 303 and fixed.headers["location"] == url
    note = {"kind": "note", "comment": " operands swapped ", "back": url}
    noted = ui.client.post(f"/runs/{first}/feedback", data=note)
    assert noted.status_code == 303 and noted.headers["location"] == url
    ui.client.post(f"/runs/{first}/feedback", data={"kind": "note", "comment": "operands swapped; 0 + 3", "back": url})
    chip = re.search(r'data-feedback-key="note"[^>]*>note <span class="muted">“([^”]*)”', ui.page(f"/runs/{first}"))
    assert chip and chip.group(1) == "operands swapped; 0 + 3"  # one note per run from the UI: the second edits it
    empty = ui.client.post(f"/runs/{first}/feedback", data={"kind": "note", "comment": "  "})
    assert empty.status_code == 400 and "a note is 1 to 4000 characters" in empty.text
    long = ui.client.post(f"/runs/{first}/feedback", data={"kind": "note", "comment": "x" * 4001})
    assert long.status_code == 400 and 'id="note-text"' in long.text and "x" * 4001 in long.text  # kept to fix
    outside = ui.client.post(f"/runs/{first}/feedback", data={"kind": "up", "back": "https://evil.example/"})
    assert outside.headers["location"] == "/"  # only local paths
    (item,) = [i for i in ui.store.annotation_queues.items(ui.ws.id, queue["id"]) if str(i["run_id"]) == first]
    done = ui.client.post(f"{url}/items/{item['id']}/done")
    assert done.status_code == 303 and done.headers["location"] == url

    html = ui.page(url)
    assert "What is 1 + 3?" in html and "1 waiting · 1 done" in html
    (last,) = ui.store.annotation_queues.items(ui.ws.id, queue["id"], completed=False)
    ui.client.post(f"{url}/items/{last['id']}/done")
    assert "All 2 reviewed" in ui.page(url)
    keys = {f["key"] for f in ui.store.feedback.list(ui.ws.id, run_ids=[uuid.UUID(first)])}
    assert keys == {"user_score", "correction", "note"}
    (note,) = ui.store.feedback.list(ui.ws.id, run_ids=[uuid.UUID(first)], keys=["note"])
    assert note["comment"] == "operands swapped; 0 + 3" and note["score"] is None


def test_keyboard_review_in_a_browser(sqlite_server, artifacts):
    sync_api = _need_browser()
    server = sqlite_server
    runs = llm_trace(f"keys-{uuid.uuid4().hex[:6]}")
    assert httpx.post(server.langsmith_url + "/runs/batch", json={"post": runs}).status_code == 202
    llm = runs[1]
    ws = server.store.workspaces.ensure("default")
    queue = server.store.annotation_queues.create(ws.id, {"name": f"keys-{uuid.uuid4().hex[:6]}"})
    server.store.annotation_queues.add(ws.id, queue["id"], [{"item_type": "RUN", "run_id": uuid.UUID(llm["id"])}])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{server.url}/queues/{queue['id']}")
        expect = sync_api.expect
        expect(page.locator("#queue-progress")).to_contain_text("1 waiting")
        page.keyboard.press("c")  # the correction editor opens, its box focused: type, Ctrl+Enter saves
        expect(page.locator("#correction-box")).to_have_attribute("open", "")
        page.keyboard.press("Control+a")
        page.keyboard.type("2 + 3 = 5.")
        page.keyboard.press("Control+Enter")
        expect(page.locator('[data-feedback-key="correction"]')).to_be_visible()
        expect(page.locator("#correction-shown")).to_contain_text("2 + 3 = 5.")  # beside the answer at once
        page.screenshot(path=str(artifacts / "18-queue.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts / "18b-queue-390px.png"), full_page=True)
        page.set_viewport_size({"width": 1440, "height": 1000})
        page.locator("h1").first.click()  # out of the correction box: keys rate again
        page.keyboard.press("g")  # good
        expect(page.locator('[data-feedback-key="user_score"]')).to_contain_text("1")
        page.keyboard.press("d")  # done, next
        expect(page.locator("#queue-empty")).to_contain_text("All 1 reviewed")
        browser.close()
    (thumbs,) = server.store.feedback.list(ws.id, run_ids=[uuid.UUID(llm["id"])], keys=["user_score"])
    assert thumbs["score"] == 1.0
    (fixed,) = server.store.feedback.list(ws.id, run_ids=[uuid.UUID(llm["id"])], keys=["correction"])
    assert fixed["correction"] == "2 + 3 = 5."
