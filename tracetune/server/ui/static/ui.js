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
