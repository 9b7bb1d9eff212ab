// tracetune UI: busy state for every form, and the playground's streamed answers. No inline script anywhere.

// A form being sent: its buttons disabled (no double submit) and the page marked busy until the answer comes.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (event.defaultPrevented || form.id === "playground") return;
  window.setTimeout(function () { busy(form, true); }, 0);  // after the browser took the submitter's value
});
window.addEventListener("pageshow", function () {  // back to a page whose form was sent: usable again
  document.querySelectorAll("form[aria-busy=true]").forEach(function (form) { busy(form, false); });
});
["htmx:beforeRequest", "htmx:afterRequest"].forEach(function (name) {  // an in-place form (Apply, feedback)
  document.addEventListener(name, function (event) {
    var form = event.target && event.target.tagName === "FORM" ? event.target : null;
    if (form) busy(form, name === "htmx:beforeRequest");
  });
});

function busy(form, on) {
  form.setAttribute("aria-busy", on ? "true" : "false");
  form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (button) {
    button.disabled = on;
  });
}

// The playground: the answer streams in as the model writes it; then the finished turn replaces the area.
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.id !== "playground" || !window.fetch || !window.TextDecoder) return;
  event.preventDefault();
  var data = new FormData(form);
  var send = document.getElementById("pg-send");
  var conversation = document.getElementById("conversation");
  busy(form, true);
  if (send) send.textContent = "Generating…";
  var empty = document.getElementById("empty-chat");
  if (empty) empty.remove();
  var mine = message(data.get("role") === "tool" ? "tool" : "user", String(data.get("content") || ""));
  conversation.appendChild(mine);
  var answer = message("assistant", "");
  answer.id = "pg-streaming";
  answer.classList.add("streaming");
  conversation.appendChild(answer);
  var text = answer.querySelector(".text");
  fetch(form.dataset.stream, { method: "POST", body: new URLSearchParams(data), credentials: "same-origin" })
    .then(function (response) {
      if (!response.body) throw new Error("no stream: HTTP " + response.status);
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (part) {
          buffer += decoder.decode(part.value || new Uint8Array(), { stream: !part.done });
          var lines = buffer.split("\n");
          buffer = part.done ? "" : lines.pop();
          lines.forEach(function (line) { if (line.trim()) handle(JSON.parse(line)); });
          if (!part.done) return pump();
        });
      }
      return pump();
    })
    .catch(function (error) {
      text.textContent = "The request failed: " + error.message + ". Send again, or reload the page.";
      answer.classList.add("failed");
      busy(form, false);
      if (send) send.textContent = "Send";
    });

  function handle(item) {
    if (typeof item.delta === "string") {
      text.textContent += item.delta;
    } else if (typeof item.html === "string") {  // the server's own page (autoescaped), its area swapped in
      var page = new DOMParser().parseFromString(item.html, "text/html");
      var area = page.getElementById("playground-area");
      var current = document.getElementById("playground-area");
      if (area && current) current.replaceWith(document.importNode(area, true));
      busy(form, false);
    }
  }
});

function message(role, content) {
  var box = document.createElement("div");
  box.className = "msg " + role;
  var label = document.createElement("div");
  label.className = "role";
  label.textContent = role;
  var text = document.createElement("div");
  text.className = "text";
  text.textContent = content;
  box.appendChild(label);
  box.appendChild(text);
  return box;
}

// Keys on a run's page (a trace, or a review queue's item): rate, correct (c opens the editor, Ctrl/Cmd+Enter saves
// it), move through the trace, and in a queue finish or skip. Ignored while typing and with a modifier held.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && target && target.id === "correction-text") {
    event.preventDefault();  // Ctrl/Cmd+Enter saves the correction being typed
    target.form.requestSubmit();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.tagName === "SELECT" ||
                 target.isContentEditable)) return;
  var good = function () { click("thumbs-up"); };
  var bad = function () { click("thumbs-down"); };
  var done = function () { click("queue-done"); };
  var actions = {
    g: good, "1": good, "+": good,
    b: bad, "0": bad, "-": bad,
    d: done, n: done,
    s: function () { click("queue-skip"); },
    p: function () { click("queue-previous"); },
    c: function () {
      var box = document.getElementById("correction-box");
      if (box) { box.open = true; var text = document.getElementById("correction-text"); if (text) text.focus(); }
    },
    j: function () { step(1); },
    k: function () { step(-1); }
  };
  var action = actions[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
});

function click(id) {
  var element = document.getElementById(id);
  if (element) element.click();
}

function step(by) {  // the next (1) or previous (-1) run of the trace's tree
  var nodes = Array.prototype.slice.call(document.querySelectorAll("#run-tree .node"));
  var at = nodes.findIndex(function (node) { return node.classList.contains("on"); });
  var next = nodes[at + by];
  var link = next ? next.querySelector("a") : null;
  if (link) link.click();
}

// The runs table's column chooser: unticked columns are hidden, remembered in this browser (localStorage), and
// hidden again whenever the table is redrawn in place.
var HIDDEN_KEY = "tracetune.runs.hidden-columns";

function hiddenColumns() {
  try { return JSON.parse(window.localStorage.getItem(HIDDEN_KEY) || "[]"); } catch (e) { return []; }
}

function applyColumns() {
  var table = document.getElementById("runs");
  var chooser = document.getElementById("columns");
  if (!chooser) return;
  var hidden = hiddenColumns();
  chooser.querySelectorAll("input[data-column]").forEach(function (box) {
    box.checked = hidden.indexOf(box.dataset.column) < 0;
  });
  if (!table) return;
  var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
    return th.dataset.column || th.textContent.trim();  // a sortable header also shows its arrow
  });
  table.querySelectorAll("tr").forEach(function (row) {
    Array.prototype.forEach.call(row.children, function (cell, i) {
      cell.hidden = hidden.indexOf(names[i]) >= 0;
    });
  });
}

document.addEventListener("change", function (event) {
  var box = event.target;
  if (!box.dataset || !box.dataset.column) return;
  var hidden = hiddenColumns().filter(function (name) { return name !== box.dataset.column; });
  if (!box.checked) hidden.push(box.dataset.column);
  try { window.localStorage.setItem(HIDDEN_KEY, JSON.stringify(hidden)); } catch (e) { /* private mode */ }
  applyColumns();
});
document.addEventListener("DOMContentLoaded", applyColumns);
document.addEventListener("htmx:afterSettle", applyColumns);
