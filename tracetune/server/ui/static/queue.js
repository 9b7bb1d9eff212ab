// Review-queue keys: g good, b bad, c open the correction editor, d done and next, s skip. Ignored while typing.
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.isContentEditable)) return;
  var actions = {
    g: function () { click("thumbs-up"); },
    b: function () { click("thumbs-down"); },
    d: function () { click("queue-done"); },
    s: function () { click("queue-skip"); },
    c: function () {
      var box = document.getElementById("correction-box");
      if (box) { box.open = true; var text = document.getElementById("correction-text"); if (text) text.focus(); }
    }
  };
  var action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});

function click(id) {
  var element = document.getElementById(id);
  if (element) element.click();
}
