// Switching the single-key shortcuts off (WCAG 2.1.4), moving focus to the
// outcome of an action, and the batch page's selection keys. Loaded after
// app.js, whose shortcuts also stop while <html data-keys-off> is set.
(function () {
  "use strict";

  var PREF = "countersign-keys";

  function off() {
    try { return localStorage.getItem(PREF) === "off"; } catch (err) { return false; }
  }

  function apply() {
    if (off()) document.documentElement.setAttribute("data-keys-off", "");
    else document.documentElement.removeAttribute("data-keys-off");
  }
  apply();

  // Form controls keep their keys: a letter typed in a field is text.
  function typing(t) {
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function batchPage() {
    var form = document.querySelector("form[data-testid=batch-form]");
    if (!form) return;
    function boxes() { return Array.prototype.slice.call(form.querySelectorAll("input[name=selected]")); }
    function items() { return Array.prototype.slice.call(form.querySelectorAll("[data-testid=batch-item]")); }
    function count() {
      var el = document.getElementById("selected-count");
      var all = boxes();
      if (el) el.textContent = all.filter(function (b) { return b.checked; }).length + " of " + all.length + " selected";
    }
    // Select all / none need script, so they are shown only with it.
    var bar = form.querySelector("[data-testid=select-bar]");
    if (bar) bar.hidden = false;
    form.addEventListener("click", function (e) {
      var b = e.target.closest && e.target.closest("[data-select]");
      if (!b) return;
      var all = b.getAttribute("data-select") === "all";
      boxes().forEach(function (x) { x.checked = all; });
      count();
    });
    form.addEventListener("change", count);
    count();

    // j/k move the focus itself from item to item (a screen reader reads
    // the item), x toggles the focused item, a approves the selected ones.
    function focusItem(el) {
      if (!el) return;
      el.focus();
      el.scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey || off() || typing(e.target)) return;
      var help = document.getElementById("keys-help");
      if (help && help.open) return;
      var list = items();
      if (list.length === 0) return;
      var cur = e.target && e.target.closest ? e.target.closest("[data-testid=batch-item]") : null;
      var i = list.indexOf(cur);
      switch (e.key) {
        case "j": focusItem(list[i < 0 ? 0 : Math.min(list.length - 1, i + 1)]); e.preventDefault(); break;
        case "k": focusItem(list[i < 0 ? list.length - 1 : Math.max(0, i - 1)]); e.preventDefault(); break;
        case "x":
          if (cur) {
            var box = cur.querySelector("input[name=selected]");
            box.checked = !box.checked;
            count();
            e.preventDefault();
          }
          break;
        case "a":
          var approve = form.querySelector("[data-testid=approve-selected]");
          if (approve) { approve.click(); e.preventDefault(); }
          break;
      }
    });
  }

  // A text a reviewer typed as a decision's reason is kept in this tab's
  // sessionStorage, keyed by the form's address, until the decision is
  // made: if the session ended meanwhile, signing in leads back to the page
  // and the text is put back. A sent form is remembered by its key: landing
  // anywhere but the sign-in page or that form again means it went through.
  var SENT = "countersign-draft-sent";
  function store(fn) { try { return fn(); } catch (err) { return null; } }
  function drafts() {
    var forms = Array.prototype.slice.call(document.querySelectorAll("form[action$='/decision']"));
    var keys = forms.map(function (f) { return "countersign-draft:" + f.getAttribute("action"); });
    var sent = store(function () { return sessionStorage.getItem(SENT); });
    if (sent && location.pathname !== "/login") {
      if (keys.indexOf(sent) < 0) store(function () { sessionStorage.removeItem(sent); });
      store(function () { sessionStorage.removeItem(SENT); });
    }
    forms.forEach(function (form, i) {
      var key = keys[i];
      var field = form.querySelector("[name=reason]");
      if (!field) return;
      var saved = store(function () { return sessionStorage.getItem(key); });
      if (saved && !field.value) {
        field.value = saved;
        var d = field.closest("details");
        if (d) d.open = true;
        var note = document.createElement("p");
        note.className = "hint";
        note.setAttribute("role", "status");
        note.setAttribute("data-testid", "draft-restored");
        note.textContent = "Restored the reason you typed before signing in again.";
        field.insertAdjacentElement("afterend", note);
      }
      field.addEventListener("input", function () {
        store(function () {
          if (field.value) sessionStorage.setItem(key, field.value);
          else sessionStorage.removeItem(key);
        });
      });
      form.addEventListener("submit", function () {
        store(function () { sessionStorage.setItem(SENT, key); });
      });
    });
  }

  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("[data-open-dialog]");
    var d = b && document.getElementById(b.getAttribute("data-open-dialog"));
    if (d && d.showModal) d.showModal();
  });

  document.addEventListener("DOMContentLoaded", function () {
    // The switch (#keys-enabled) is app.js's: it stores the same choice
    // and sets the same attribute that apply() reads on every page.
    // After an action, focus goes to its outcome, not the top of the page.
    var focus = document.querySelector("[data-focus]");
    if (focus) focus.focus();
    batchPage();
    drafts();
  });
  // A decision's answer, the next request, was swapped in (app.js): its
  // form keeps drafts like a loaded page's.
  document.addEventListener("countersign:review", drafts);
})();
