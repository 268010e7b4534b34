// Keyboard shortcuts and live-update care for the console. Loaded as a file:
// the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  // A focused control keeps its keys: single-key shortcuts yield to fields
  // (typing), buttons and the like (Enter and Space are theirs). Links are not
  // controls here, so that j and k go on from the row link they focused; Enter
  // on a link is left to the browser, which follows that link.
  function control(t) {
    if (!t || (t.closest && t.closest("dialog:not([open])"))) return false; // left behind in a closed dialog
    return t.isContentEditable || /^(INPUT|TEXTAREA|SELECT|BUTTON|SUMMARY|OPTION)$/.test(t.tagName);
  }

  // Single-key shortcuts can be switched off (WCAG 2.1.4), per browser: the
  // choice is kept in localStorage and read by every page.
  // The same choice as keys.js's switch (#keys-enabled): one key, one attribute.
  var SHORTCUTS = "countersign-keys";
  function shortcutsOn() {
    try { return localStorage.getItem(SHORTCUTS) !== "off"; } catch (err) { return true; }
  }
  function setShortcuts(on) {
    try { if (on) localStorage.removeItem(SHORTCUTS); else localStorage.setItem(SHORTCUTS, "off"); } catch (err) { /* storage off */ }
    document.documentElement.setAttribute("data-shortcuts", on ? "on" : "off");
    if (on) document.documentElement.removeAttribute("data-keys-off");
    else document.documentElement.setAttribute("data-keys-off", "");
  }

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-testid=inbox-row]")); }

  // The selected inbox row is remembered by request id, so a live refresh of
  // the table keeps it (and never moves the keyboard focus).
  var selectedId = null;

  function rowLink(row) { return row && row.querySelector("[data-testid=row-link]"); }

  function mark(row) {
    rows().forEach(function (r) { r.classList.remove("selected"); r.setAttribute("aria-selected", "false"); });
    if (row) { row.classList.add("selected"); row.setAttribute("aria-selected", "true"); }
  }

  // select moves the real focus to the row's link (roving focus: a screen
  // reader reads the request, and Enter opens it natively).
  function select(row) {
    mark(row);
    if (!row) { selectedId = null; return; }
    selectedId = row.getAttribute("data-id");
    var link = rowLink(row);
    if (link) link.focus(); else row.scrollIntoView({ block: "nearest" });
  }

  function move(delta) {
    var rs = rows();
    if (rs.length === 0) return;
    var i = rs.findIndex(function (r) { return r.getAttribute("data-id") === selectedId; });
    i = i < 0 ? (delta > 0 ? 0 : rs.length - 1) : Math.min(rs.length - 1, Math.max(0, i + delta));
    select(rs[i]);
  }

  // Tabbing to a row's link selects that row, so that the selection and
  // the focus never disagree.
  document.addEventListener("focusin", function (e) {
    var t = e.target;
    if (!t || !t.matches || !t.matches("[data-testid=row-link]")) return;
    var row = t.closest("tr[data-testid=inbox-row]");
    if (row && row.getAttribute("data-id") !== selectedId) { selectedId = row.getAttribute("data-id"); mark(row); }
  });

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
  // claim of this user to renew, which is the common case and harmless. A
  // decision swaps the next request in: renewClaim(true) renews its claim
  // at once.
  var renewClaim = (function () {
    if (!review() || !window.fetch) return function () {};
    var headers = {};
    try { headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}"); } catch (err) { return function () {}; }
    headers["X-Live-Refresh"] = "1"; // a renewal is not the reviewer's own activity
    var active = true;
    ["keydown", "pointerdown", "scroll", "input"].forEach(function (ev) {
      document.addEventListener(ev, function () { active = true; }, { passive: true, capture: true });
    });
    function ping(now) {
      var page = review();
      if (!page || !(active || now)) return;
      active = false;
      fetch("/requests/" + encodeURIComponent(page.getAttribute("data-request")) + "/claim/renew",
        { method: "POST", headers: headers, credentials: "same-origin" }).catch(function () { /* offline: the claim lapses */ });
    }
    ping();
    setInterval(ping, 60000);
    return ping;
  })();

  // When the request on screen arrived (a page load, or a decision's answer
  // swapped in): a key pressed before it was shown was meant for the one
  // before, and must not approve this one (a double a, a key held down).
  // Nor may a decision sent within DWELL ms of its arrival: the second a of
  // a double a, or the second click of a double click (a double tap on the
  // phone's decide bar, which stays where it is), lands after a fast answer
  // has swapped the next request in, on its Approve, before anyone can
  // have read it.
  var shownAt = 0;
  var DWELL = 500;
  function tooSoon(t) { return shownAt > 0 && t - shownAt < DWELL; }
  document.addEventListener("submit", function (e) {
    // Capturing, before htmx's own listener on the form sends it.
    if (e.target && e.target.id === "decision-form" && tooSoon(performance.now())) {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  }, true);

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
  function approveKey(e) {
    var r = review();
    if (!document.getElementById("approve")) return false;
    if (e.repeat || e.timeStamp < shownAt || tooSoon(e.timeStamp)) return true; // swallowed: not for this request
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
    // Switched off in the keyboard help (static/keys.js), except Escape.
    if (document.documentElement.hasAttribute("data-keys-off") && e.key !== "Escape") return;
    var help = document.getElementById("keys-help");
    if (e.key === "Escape" && help && help.open) { help.close(); focusBack(help); e.preventDefault(); return; }
    if (control(e.target)) return;
    if (e.key === "Enter") {
      // Enter on a link is the link's; only with the focus on nothing
      // interactive does it open the selected request.
      if (e.target && e.target.closest && e.target.closest("a[href]")) return;
      var row = rows().find(function (r) { return r.getAttribute("data-id") === selectedId; });
      if (row) { window.location.href = row.getAttribute("data-href"); e.preventDefault(); }
      return;
    }
    if (!shortcutsOn()) return;
    if (e.key !== "a" && e.key !== "Shift") disarm();
    switch (e.key) {
      case "j": if (review()) go("data-next"); else move(1); e.preventDefault(); break;
      case "k": if (review()) go("data-prev"); else move(-1); e.preventDefault(); break;
      case "a":
        if (approveKey(e)) { e.preventDefault(); break; }
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
      case "?": if (help) { openDialog(help); e.preventDefault(); } break;
    }
  });

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t && t.hasAttribute && t.hasAttribute("data-close-dialog")) {
      var d = t.closest("dialog");
      if (d) d.close();
    }
    var opener = t && t.closest && t.closest("[data-open-dialog]");
    if (opener) {
      var dlg = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dlg) openDialog(dlg);
    }
  });

  // A closed dialog gives the focus back to what had it, or to nothing:
  // left on a control inside the hidden dialog, it would swallow the next
  // keys (Chrome restores nothing when the body had the focus).
  var dialogOpener = null;
  function openDialog(d) {
    dialogOpener = document.activeElement;
    d.showModal();
  }
  function focusBack(d) {
    var a = document.activeElement;
    if (a && d.contains(a)) {
      if (dialogOpener && dialogOpener !== document.body && document.contains(dialogOpener)) dialogOpener.focus();
      else a.blur();
    }
  }
  document.querySelectorAll("dialog").forEach(function (d) {
    d.addEventListener("close", function () { focusBack(d); dialogOpener = null; });
  });

  document.addEventListener("change", function (e) {
    if (e.target && (e.target.id === "shortcuts-on" || e.target.id === "keys-enabled")) setShortcuts(e.target.checked);
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

  // Where the keyboard focus last was, when it was in an inbox row (which
  // row, which control of it): a swap that removes the focused element fires
  // no focusin, so after it this still says where the focus was, and it is
  // never older than the last key that moved the focus.
  var focusWas = null;
  document.addEventListener("focusin", function (e) {
    var a = e.target;
    var row = a && a.closest && a.closest("tr[data-testid=inbox-row]");
    focusWas = row ? { id: row.getAttribute("data-id"), testid: a.getAttribute("data-testid"), index: rows().indexOf(row) } : null;
  });
  // A click elsewhere may leave the focus on the body with no focusin: the
  // next refresh must not pull it back into the table.
  document.addEventListener("mousedown", function (e) {
    if (!(e.target && e.target.closest && e.target.closest("tr[data-testid=inbox-row]"))) focusWas = null;
  }, true);

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
  // Otherwise, after an action (a decision, a refused form, a simulation)
  // the focus goes to its outcome, not the top of the page.
  document.addEventListener("DOMContentLoaded", function () {
    setShortcuts(shortcutsOn());
    var toggle = document.getElementById("shortcuts-on") || document.getElementById("keys-enabled");
    if (toggle) toggle.checked = shortcutsOn();
    labelScrollBoxes();
    preview();
    var bad = document.querySelector("#decision-form [aria-invalid=true]");
    if (bad) { openDetails(bad); return; }
    focusOutcome(document);
  });

  function focusOutcome(root) {
    var outcome = root.querySelector("[data-outcome], [data-focus]");
    if (outcome) {
      if (!outcome.hasAttribute("tabindex")) outcome.setAttribute("tabindex", "-1");
      outcome.focus({ preventScroll: true });
    }
  }

  // A decision sent through htmx answers with the next request's review,
  // swapped in place of this one (web/review.go handleDecide): the page is
  // set up for it as a loaded page would be, and the focus goes to the
  // outcome (the toast). keys.js hears "countersign:review" for its drafts.
  function fromDecision(e) {
    var elt = e.detail && e.detail.requestConfig && e.detail.requestConfig.elt;
    return !!(elt && elt.id === "decision-form");
  }
  document.addEventListener("htmx:afterSwap", function (e) {
    if (!fromDecision(e)) return;
    shownAt = performance.now();
    disarm();
    // Measuring every table and block forces layouts, interleaved with the
    // attributes it sets: after the request is painted, not before.
    requestAnimationFrame(function () { setTimeout(labelScrollBoxes, 0); });
    preview();
    var page = review();
    if (page) focusOutcome(page);
    renewClaim(true);
    document.dispatchEvent(new CustomEvent("countersign:review"));
  });
  // A decision that could not be sent or failed on the server (htmx swaps
  // no error page) is said at the form. A 5xx may come after the decision
  // was taken (reading the next request), so the page says to reload and
  // see, not to decide again; a refusal comes back as a redirect instead.
  function sendFailed(e) {
    if (!fromDecision(e)) return;
    var live = document.getElementById("live-state");
    if (!live) return;
    var status = e.detail.xhr && e.detail.xhr.status;
    live.textContent = "";
    var p = document.createElement("p");
    p.className = "flash error";
    p.setAttribute("role", "alert");
    p.setAttribute("tabindex", "-1");
    p.setAttribute("data-testid", "send-failed");
    p.textContent = status ? "The server answered " + status + ": reload the page to see whether the decision was taken." :
      "The decision could not be sent: check the connection and try again.";
    live.appendChild(p);
    p.focus();
  }
  document.addEventListener("htmx:responseError", sendFailed);
  document.addEventListener("htmx:sendError", sendFailed);

  // Boxes that scroll (wide tables on a phone, long blocks of text) must be
  // reachable by keyboard: each one that overflows takes the focus and is
  // named after its heading or caption. Checked again on resize.
  function labelScrollBoxes() {
    document.querySelectorAll("main table, main pre, main .full").forEach(function (el) {
      var cs = getComputedStyle(el);
      var scrolls = (el.scrollWidth > el.clientWidth + 1 && /auto|scroll/.test(cs.overflowX)) ||
        (el.scrollHeight > el.clientHeight + 1 && /auto|scroll/.test(cs.overflowY));
      if (!scrolls) {
        if (el.hasAttribute("data-scroll-box")) { el.removeAttribute("tabindex"); el.removeAttribute("data-scroll-box"); }
        return;
      }
      if (el.hasAttribute("tabindex")) return;
      el.setAttribute("tabindex", "0");
      el.setAttribute("data-scroll-box", "");
      if (!el.hasAttribute("aria-label") && !el.hasAttribute("aria-labelledby")) {
        var cap = el.querySelector("caption");
        var head = null;
        for (var n = el; n && !head && n !== document.body; n = n.parentElement) {
          for (var p = n.previousElementSibling; p && !head; p = p.previousElementSibling) {
            if (/^H[1-6]$/.test(p.tagName)) head = p;
          }
        }
        var name = cap ? cap.textContent : head ? head.textContent : el.tagName === "TABLE" ? "Table" : "Text";
        el.setAttribute("aria-label", name.trim().slice(0, 80) + " (scrolls)");
      }
      if (el.tagName === "PRE" || el.classList.contains("full")) el.setAttribute("role", "region");
    });
  }
  var resizing = null;
  window.addEventListener("resize", function () { clearTimeout(resizing); resizing = setTimeout(labelScrollBoxes, 150); });

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
    var rs = rows();
    var byId = function (id) { return rs.find(function (r) { return r.getAttribute("data-id") === id; }); };
    if (selectedId) mark(byId(selectedId) || null);
    else mark(null);
    // Only when the swap took the focus away (it fell to the body): if the
    // reviewer moved it elsewhere meanwhile, it stays there.
    var lost = !document.activeElement || document.activeElement === document.body;
    if (focusWas && lost) {
      // The same row by id; if it left (decided elsewhere), the row that took
      // its place, so the focus never drops to the body.
      var row = byId(focusWas.id) || rs[Math.min(focusWas.index, rs.length - 1)];
      var target = row && ((focusWas.testid && row.querySelector("[data-testid=" + focusWas.testid + "]")) || rowLink(row));
      if (target) {
        if (row.getAttribute("data-id") !== focusWas.id) { selectedId = row.getAttribute("data-id"); mark(row); }
        target.focus({ preventScroll: true });
      } else {
        var table = document.querySelector("[data-testid=inbox]");
        if (table) { table.setAttribute("tabindex", "-1"); table.focus({ preventScroll: true }); }
      }
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
