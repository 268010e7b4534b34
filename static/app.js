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

  // say shows a message in the inbox's status line (role=status, read out).
  function say(msg) {
    var el = document.getElementById("inbox-why");
    if (el) el.textContent = msg;
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
      case "a":
        if (document.getElementById("approve")) { click("approve"); e.preventDefault(); break; }
        // In the inbox, "a" never does nothing silently: it says why the
        // selected request cannot be decided here.
        var sel = rows().find(function (r) { return r.getAttribute("data-id") === selectedId; });
        if (sel) {
          say(sel.getAttribute("data-why-not") || "Open the request (Enter) to decide it.");
          e.preventDefault();
        }
        break;
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

  // Before htmx refreshes the inbox, note which rows were shown, so that the
  // polite live region can announce only the new ones.
  var shownIds = null;
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.target && e.target.id === "inbox-live") {
      shownIds = {};
      rows().forEach(function (r) { shownIds[r.getAttribute("data-id")] = true; });
    }
  });

  // After htmx refreshes the inbox, restore the selection by id and announce
  // the rows that arrived.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (!e.target || e.target.id !== "inbox-live") return;
    if (selectedId) {
      var row = rows().find(function (r) { return r.getAttribute("data-id") === selectedId; });
      if (row) { row.classList.add("selected"); row.setAttribute("aria-selected", "true"); }
    }
    if (shownIds) {
      var fresh = rows().filter(function (r) { return !shownIds[r.getAttribute("data-id")]; });
      var live = document.getElementById("inbox-announce");
      if (fresh.length > 0 && live) {
        var first = fresh[0].querySelector("[data-testid=row-link]");
        live.textContent = (fresh.length === 1 ? "1 new request" : fresh.length + " new requests") +
          (first ? ": " + first.textContent.trim() : "");
      }
      shownIds = null;
    }
  });

  // Inbox filters apply on change: the form is submitted as a plain GET (so
  // it also works without script, with its button), and the control that
  // changed gets the focus back on the new page.
  var filters = document.querySelector("form[data-autosubmit]");
  if (filters) {
    filters.classList.add("auto");
    filters.addEventListener("change", function (e) {
      if (e.target && e.target.name) {
        try { sessionStorage.setItem("inbox-focus", e.target.name); } catch (err) { /* storage off */ }
      }
      filters.requestSubmit();
    });
    var again = null;
    try { again = sessionStorage.getItem("inbox-focus"); sessionStorage.removeItem("inbox-focus"); } catch (err) { /* storage off */ }
    if (again && filters.elements[again]) filters.elements[again].focus();
  }
})();
