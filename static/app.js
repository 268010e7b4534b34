// Keyboard shortcuts and live-update care for the console. Loaded as a file:
// the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function typing(e) {
    var t = e.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-testid=inbox-row]")); }

  // The selected inbox row is remembered by request id, so a live refresh of
  // the table keeps it (and never moves the keyboard focus).
  var selectedId = null;

  function select(row) {
    rows().forEach(function (r) { r.classList.remove("selected"); r.removeAttribute("aria-selected"); });
    if (!row) { selectedId = null; return; }
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    selectedId = row.getAttribute("data-id");
    row.scrollIntoView({ block: "nearest" });
  }

  function move(delta) {
    var rs = rows();
    if (rs.length === 0) return;
    var i = rs.findIndex(function (r) { return r.getAttribute("data-id") === selectedId; });
    i = i < 0 ? (delta > 0 ? 0 : rs.length - 1) : Math.min(rs.length - 1, Math.max(0, i + delta));
    select(rs[i]);
  }

  function click(id) { var el = document.getElementById(id); if (el) el.click(); }

  function openDetails(el) {
    if (!el) return;
    var d = el.closest("details");
    if (d) d.open = true;
    el.focus();
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    // Switched off in the keyboard help (static/keys.js), except Escape.
    if (document.documentElement.hasAttribute("data-keys-off") && e.key !== "Escape") return;
    var help = document.getElementById("keys-help");
    if (e.key === "Escape" && help && help.open) { help.close(); return; }
    if (typing(e)) return;
    switch (e.key) {
      case "j": move(1); e.preventDefault(); break;
      case "k": move(-1); e.preventDefault(); break;
      case "Enter":
        var row = rows().find(function (r) { return r.getAttribute("data-id") === selectedId; });
        if (row) { window.location.href = row.getAttribute("data-href"); e.preventDefault(); }
        break;
      case "a": if (document.getElementById("approve")) { click("approve"); e.preventDefault(); } break;
      case "r": if (document.getElementById("reason")) { openDetails(document.getElementById("reason")); e.preventDefault(); } break;
      case "e": if (document.getElementById("edited-params")) { openDetails(document.getElementById("edited-params")); e.preventDefault(); } break;
      case "?": if (help) { help.showModal(); e.preventDefault(); } break;
    }
  });

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t && t.hasAttribute && t.hasAttribute("data-close-dialog")) {
      var d = t.closest("dialog");
      if (d) d.close();
    }
  });

  // Requests caused by a live event (sse:*), a poll (every) or a page load
  // are marked, so that the server does not count them as the user's
  // activity: an unattended console still goes idle and signs out.
  document.addEventListener("htmx:configRequest", function (e) {
    var ev = e.detail.triggeringEvent;
    if (!ev || ev.type === "load" || /^sse:/.test(ev.type)) {
      e.detail.headers["X-Live-Refresh"] = "1";
    }
  });

  // After htmx refreshes the inbox rows, restore the selection by id.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.target && e.target.id === "inbox-rows" && selectedId) {
      var row = rows().find(function (r) { return r.getAttribute("data-id") === selectedId; });
      if (row) { row.classList.add("selected"); row.setAttribute("aria-selected", "true"); }
    }
  });
})();
