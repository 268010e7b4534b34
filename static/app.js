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

  function review() { return document.querySelector("article[data-testid=review]"); }

  // A claim ("I'm reviewing this") lasts while its claimer works on the
  // request: the review page renews it on opening and then every minute in
  // which the reviewer did something (a key, a click, a scroll); an idle page
  // lets it lapse after five minutes. The server answers 404 when there is no
  // claim of this user to renew, which is the common case and harmless.
  (function renewClaim() {
    var page = review();
    if (!page || !window.fetch) return;
    var headers = {};
    try { headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}"); } catch (err) { return; }
    headers["X-Live-Refresh"] = "1"; // a renewal is not the reviewer's own activity
    var active = true;
    ["keydown", "pointerdown", "scroll", "input"].forEach(function (ev) {
      document.addEventListener(ev, function () { active = true; }, { passive: true, capture: true });
    });
    function ping() {
      if (!active) return;
      active = false;
      fetch("/requests/" + encodeURIComponent(page.getAttribute("data-request")) + "/claim/renew",
        { method: "POST", headers: headers, credentials: "same-origin" }).catch(function () { /* offline: the claim lapses */ });
    }
    ping();
    setInterval(ping, 60000);
  })();

  // On the review page j and k go to the next and previous request in the
  // inbox's order.
  function go(attr) {
    var r = review(), url = r && r.getAttribute(attr);
    if (url) window.location.href = url;
  }

  // a on a high-risk or irreversible action asks again: a second a within a
  // few seconds approves, any other key or the timeout disarms it.
  var armed = null;
  function disarm() {
    if (!armed) return;
    clearTimeout(armed);
    armed = null;
    var hint = document.getElementById("confirm-hint");
    if (hint) { hint.textContent = hint.getAttribute("data-idle") || hint.textContent; hint.classList.remove("armed"); }
  }
  function approveKey() {
    var r = review();
    if (!document.getElementById("approve")) return false;
    if (r && r.hasAttribute("data-confirm") && !armed) {
      var hint = document.getElementById("confirm-hint");
      if (hint) {
        if (!hint.getAttribute("data-idle")) hint.setAttribute("data-idle", hint.textContent);
        hint.textContent = "High risk or not reversible: press a again to approve, any other key to cancel.";
        hint.classList.add("armed");
      }
      armed = setTimeout(disarm, 5000);
      return true;
    }
    disarm();
    click("approve");
    return true;
  }

  // A key that moved the focus into a field must not also be typed there:
  // its keypress can arrive after the keydown moved the focus.
  var swallow = null;
  document.addEventListener("keypress", function (e) {
    if (swallow && e.key === swallow) e.preventDefault();
    swallow = null;
  }, true);
  document.addEventListener("keyup", function () { swallow = null; }, true);

  function firstEditField() { return document.querySelector("#edit-fields input, #edit-fields textarea, #edit-fields select"); }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var help = document.getElementById("keys-help");
    if (e.key === "Escape" && help && help.open) { help.close(); return; }
    if (typing(e)) return;
    if (e.key !== "a" && e.key !== "Shift") disarm();
    switch (e.key) {
      case "j": if (review()) go("data-next"); else move(1); e.preventDefault(); break;
      case "k": if (review()) go("data-prev"); else move(-1); e.preventDefault(); break;
      case "Enter":
        var row = rows().find(function (r) { return r.getAttribute("data-id") === selectedId; });
        if (row) { window.location.href = row.getAttribute("data-href"); e.preventDefault(); }
        break;
      case "a":
        if (approveKey()) { e.preventDefault(); break; }
        // In the inbox, "a" never does nothing silently: it says why the
        // selected request cannot be decided here.
        var sel = rows().find(function (r) { return r.getAttribute("data-id") === selectedId; });
        if (sel) {
          say(sel.getAttribute("data-why-not") || "Open the request (Enter) to decide it.");
          e.preventDefault();
        }
        break;
      case "r": if (document.getElementById("reason")) { openDetails(document.getElementById("reason")); swallow = e.key; e.preventDefault(); } break;
      case "e": if (firstEditField()) { openDetails(firstEditField()); swallow = e.key; e.preventDefault(); } break;
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

  // The edit form's live preview: every field whose value differs from the
  // proposal, as text (never markup: values are model text).
  function preview() {
    var list = document.getElementById("edit-preview");
    if (!list) return;
    var fields = document.querySelectorAll("#edit-fields [data-original]");
    list.textContent = "";
    fields.forEach(function (f) {
      if (f.value === f.getAttribute("data-original")) return;
      var li = document.createElement("li");
      li.setAttribute("data-testid", "preview-change");
      var name = document.createElement("code");
      name.textContent = f.name.replace(/^param/, "");
      var from = document.createElement("del");
      from.textContent = f.getAttribute("data-original") === "" ? "(empty)" : f.getAttribute("data-original");
      var to = document.createElement("ins");
      to.textContent = f.value === "" ? "(empty)" : f.value;
      li.append(name, ": ", from, " → ", to);
      list.appendChild(li);
    });
    if (!list.firstChild) {
      var none = document.createElement("li");
      none.className = "hint";
      none.textContent = "None yet.";
      list.appendChild(none);
    }
  }
  document.addEventListener("input", function (e) { if (e.target.closest && e.target.closest("#edit-fields")) preview(); });
  document.addEventListener("change", function (e) { if (e.target.closest && e.target.closest("#edit-fields")) preview(); });

  // A refused form: focus the first field it refused, opening its section.
  document.addEventListener("DOMContentLoaded", function () {
    var bad = document.querySelector("#decision-form [aria-invalid=true]");
    if (bad) openDetails(bad);
    preview();
  });

  // After htmx refreshes the inbox, restore the selection by id and announce
  // the rows that arrived.
  document.addEventListener("htmx:afterSwap", function (e) {
    // Someone else decided the request this page shows: close the form but
    // keep what was typed in it.
    if (e.target && e.target.id === "live-state" && e.target.querySelector("[data-decided]")) {
      var fs = document.getElementById("decision-fields");
      if (fs) fs.disabled = true;
      document.querySelectorAll(".decide-bar button").forEach(function (b) { b.disabled = true; });
      var approve = document.getElementById("approve");
      if (approve) approve.removeAttribute("id"); // the a key no longer approves
      return;
    }
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
