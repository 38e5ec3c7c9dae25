/* msp_dashboard: the little behaviour the pages need, in one static file (no inline script,
   so a strict Content-Security-Policy holds; htmx runs with allowEval off).

   - Live polling: the element with [data-poll] (the grid's rows, the customer page) gets a
     "live-poll" event every data-poll seconds while the tab is visible and no menu or dialog
     is open; htmx re-renders it from the server.
   - Connection state: when a request cannot reach the server (or it answers 5xx) a banner says
     since when; "updated N s ago" says when the page last reached the server.
   - Title and favicon show the number of customers with problems.
   - Dialogs: credential forms open in <dialog id="modal"> (hx-get into #modal-body); on
     "credentials-changed" the dialog closes, the rows reload and a toast says what happened.
   - Keyboard: / search, j/k move between customers, p problems only, w wall screen, ? help.
   - A poll that changes nothing costs nothing: the page sends the version it shows
     (X-Grid-Version) and gets 204. When something changed, only the rows whose digest
     (data-v) changed are replaced, in place: no flicker, no scroll jump, focus and open
     menus kept. "2 min ago" and "for 3 h" tick here, from their <time datetime>. */
(function () {
  "use strict";

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };

  var lastContact = Date.now();
  var lastPoll = Date.now();
  var lostSince = null;
  var lostWhy = "";
  var pollTimer = null;
  var closeAfterSwap = false;
  var dialogOpener = null;

  function liveElement() { return $("[data-poll]"); }
  function modal() { return $("#modal"); }

  // --- time as people read it -------------------------------------------------------------
  function ago(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 5) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }
  function clockTime(date) {
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  // --- clock texts: "2 min ago", "for 3 h" (the same words as portals.queries) ---------------
  var skew = 0; // server clock minus this browser's, from the last full answer
  function spanText(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " d";
  }
  function noteServerTime(el) {
    var served = el && Date.parse(el.getAttribute("data-served-at") || "");
    if (served) skew = served - Date.now();
  }
  function tickTimes() {
    var el = liveElement();
    if (!el) return;
    var now = Date.now() + skew;
    $$("time.age[datetime], time.since[datetime]", el).forEach(function (t) {
      if (t._at === undefined) t._at = Date.parse(t.getAttribute("datetime")) || null;
      if (t._at === null) return;
      var s = (now - t._at) / 1000;
      var text = t.classList.contains("since") ? "for " + spanText(s) : s < 10 ? "just now" : spanText(s) + " ago";
      if (t.textContent !== text) t.textContent = text;
    });
  }

  // --- polling ------------------------------------------------------------------------------
  function busy() {
    var dialog = modal();
    return (dialog && dialog.open) || $("details.menu[open]") !== null;
  }
  function pollSeconds() {
    var el = liveElement();
    var n = el ? Number(el.getAttribute("data-poll")) : 0;
    return n > 0 ? n : 5;
  }
  function poll() {
    var el = liveElement();
    if (!el || !window.htmx || document.visibilityState !== "visible" || busy()) return;
    lastPoll = Date.now();
    window.htmx.trigger(el, "live-poll");
  }
  function schedule() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(function () { poll(); schedule(); }, pollSeconds() * 1000);
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && Date.now() - lastPoll > pollSeconds() * 1000) {
      poll();
      schedule();
    }
  });

  // --- connection state ---------------------------------------------------------------------
  function markLost(why) {
    if (lostSince === null) lostSince = new Date();
    lostWhy = why;
    document.body.classList.add("conn-lost");
    var banner = $("#conn-banner");
    if (banner) {
      var since = $("#conn-since", banner);
      if (since) {
        since.textContent = clockTime(lostSince) + (why ? " (" + why + ")" : "");
        since.setAttribute("datetime", lostSince.toISOString());
      }
      banner.hidden = false;
    }
    updateIdentity();
  }
  function markOk() {
    lastContact = Date.now();
    if (lostSince === null) return;
    lostSince = null;
    lostWhy = "";
    document.body.classList.remove("conn-lost");
    var banner = $("#conn-banner");
    if (banner) banner.hidden = true;
    updateIdentity();
  }
  function tickContact() {
    var note = $("#last-contact");
    if (!note) return;
    note.textContent = lostSince
      ? "no contact with the server for " + ago(Date.now() - lastContact).replace(" ago", "")
      : "updated " + ago(Date.now() - lastContact);
    note.title = "The page last reached the server at " + clockTime(new Date(lastContact));
  }
  setInterval(function () { tickContact(); tickTimes(); }, 1000);

  document.addEventListener("htmx:sendError", function () { markLost("no answer"); });
  document.addEventListener("htmx:timeout", function () { markLost("timed out"); });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status >= 500) markLost("HTTP " + xhr.status);
    else if (xhr && isLive(event.detail.elt)) markLost("HTTP " + xhr.status);
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status > 0 && xhr.status < 400) markOk();
  });
  function isLive(el) { return !!(el && el.closest && el.closest("[data-poll], #filters")); }

  // --- title and favicon ----------------------------------------------------------------------
  function faviconSvg(problems, lost) {
    var colour = lost ? "#6b7280" : problems ? "#d92d20" : "#16a34a";
    var text = lost ? "!" : problems > 99 ? "99+" : problems ? String(problems) : "";
    var size = text.length > 2 ? 13 : text.length > 1 ? 18 : 22;
    var mark = text
      ? '<text x="16" y="' + (16 + size * 0.36) + '" font-family="Arial,Helvetica,sans-serif" font-size="' + size +
        '" font-weight="700" text-anchor="middle" fill="#fff">' + text + "</text>"
      : '<path d="M8.5 16.5l5 5L24 11" fill="none" stroke="#fff" stroke-width="3.8" stroke-linecap="round" stroke-linejoin="round"/>';
    return '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="8" fill="' +
      colour + '"/>' + mark + "</svg>";
  }
  function updateIdentity() {
    var el = liveElement();
    if (!el || !el.hasAttribute("data-problems")) return;
    var problems = Number(el.getAttribute("data-problems")) || 0;
    var title = el.getAttribute("data-title") || document.title;
    document.title = (lostSince ? "⚠ Disconnected · " : "") + title;
    var icon = $("#favicon");
    if (icon) icon.setAttribute("href", "data:image/svg+xml," + encodeURIComponent(faviconSvg(problems, lostSince !== null)));
  }

  // --- toasts ------------------------------------------------------------------------------------
  var toastTimer = null;
  function toast(message, isError) {
    var el = $("#toast");
    if (!el || !message) return;
    el.textContent = message;
    el.classList.toggle("is-error", !!isError);
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.hidden = true; }, 6000);
  }
  document.addEventListener("toast", function (event) {
    var detail = event.detail || {};
    toast(detail.message, Number(detail.level) >= 40);
  });

  // --- menus and the credential dialog -----------------------------------------------------------
  function closeMenus(except) {
    $$("details.menu[open]").forEach(function (menu) { if (menu !== except) menu.open = false; });
  }
  function fillMenu(menu) {
    var items = menu.querySelector(".menu-items");
    var template = $("#row-menu");
    var row = menu.closest(".row");
    if (!items || !template || !row || items.childElementCount) return;
    var link = row.querySelector(".row-name");
    var values = {
      pk: row.getAttribute("data-customer") || "",
      token: row.getAttribute("data-token") || "",
      masked: row.getAttribute("data-masked") || "",
      url: link ? link.getAttribute("href") : ""
    };
    var fill = function (text) {
      return text.replace(/\{(pk|token|masked|url)\}/g, function (_, key) { return values[key]; });
    };
    var fragment = template.content.cloneNode(true);
    Array.prototype.slice.call(fragment.children).forEach(function (el) {
      var needs = el.getAttribute("data-needs");
      if ((needs === "token" && !values.token) || (needs === "legacy" && row.hasAttribute("data-oauth"))) el.remove();
    });
    Array.prototype.slice.call(fragment.querySelectorAll("*")).forEach(function (el) {
      ["href", "action", "hx-get", "hx-post"].forEach(function (name) {
        if (el.hasAttribute(name)) el.setAttribute(name, fill(el.getAttribute(name)));
      });
      if (el.childElementCount === 0 && el.textContent.indexOf("{") !== -1) el.textContent = fill(el.textContent);
    });
    items.appendChild(fragment);
    if (window.htmx) window.htmx.process(items);
  }
  document.addEventListener("toggle", function (event) {
    var el = event.target;
    if (el.matches && el.matches("details.menu") && el.open) {
      fillMenu(el);
      closeMenus(el);
    }
  }, true);
  document.addEventListener("click", function (event) {
    var t = event.target;
    if (!t.closest("details.menu")) closeMenus();
    var cell = t.closest("li.cell[data-g]");
    var name = cell && cell.closest(".row") ? cell.closest(".row").querySelector(".row-name") : null;
    if (name) {
      window.location.href = name.href + "#g-" + encodeURIComponent(cell.getAttribute("data-g"));
      return;
    }
    var close = t.closest("[data-dialog-close]");
    var inModal = t.closest("#modal");
    var link = t.closest("a");
    if (close || (inModal && link && !link.hasAttribute("hx-get") && link.textContent.trim() === "Cancel")) {
      event.preventDefault();
      closeModal();
      return;
    }
    var keep = t.closest("a[data-with-query]");
    if (keep) keep.href = withQuery(keep.getAttribute("href"), keep.hasAttribute("data-wall-toggle"));
    var opener = t.closest("[data-dialog]");
    if (opener) dialogOpener = opener.closest("details.menu") ? opener.closest("details.menu").querySelector("summary") : opener;
  });

  function openModal() {
    var dialog = modal();
    if (!dialog) return;
    closeMenus();
    if (!dialog.open) dialog.showModal();
    focusForm();
  }
  function focusForm() {
    var dialog = modal();
    var target = $("#modal-body [role=alert], #modal-body .error", dialog) ? null : $("#modal-body input:not([type=hidden]), #modal-body button[type=submit]", dialog);
    if (target) target.focus();
  }
  function closeModal() {
    var dialog = modal();
    if (dialog && dialog.open) dialog.close();
  }
  document.addEventListener("close", function (event) {
    if (event.target.id !== "modal") return;
    var body = $("#modal-body");
    if (body) body.innerHTML = "";
    if (dialogOpener && document.body.contains(dialogOpener)) dialogOpener.focus();
    dialogOpener = null;
    schedule();
  }, true);

  // --- the live grid: send the version shown, replace only the rows that changed -------------
  var sendVersion = true; // false once: the next poll asks for every row
  document.addEventListener("htmx:configRequest", function (event) {
    var el = liveElement();
    if (el && event.detail.elt === el && el.getAttribute("data-version")) {
      if (sendVersion) event.detail.headers["X-Grid-Version"] = el.getAttribute("data-version");
      sendVersion = true;
    }
  });
  function rowNodes(oldRows, newRows) {
    // The row elements to show, in order. A full answer: its rows, where a row's data-v is
    // unchanged the element already on the page. A delta (data-order: the server knew the
    // version the page holds and sent only the rows that changed): the rows sent, and the
    // page's own elements for the others; null if one is missing.
    var order = newRows.getAttribute("data-order");
    var rest = Array.prototype.slice.call(newRows.childNodes);
    if (order === null) {
      return rest.map(function (node) {
        var old = node.id ? document.getElementById(node.id) : null;
        return old && old.parentNode === oldRows && old.getAttribute("data-v") === node.getAttribute("data-v") ? old : node;
      });
    }
    if (newRows.getAttribute("data-base") !== liveElement().getAttribute("data-version")) return null;
    var sent = {};
    rest = rest.filter(function (node) {
      if (!node.id) return true;
      sent[node.id] = node;
      return false;
    });
    var nodes = [];
    var ids = order ? order.split(",") : [];
    for (var i = 0; i < ids.length; i++) {
      var id = "c-" + ids[i];
      var node = sent[id] || document.getElementById(id);
      if (!node || (!sent[id] && node.parentNode !== oldRows)) return null;
      nodes.push(node);
    }
    return nodes.concat(rest);
  }
  function patchGrid(live, fresh) {
    // Same URL (filters) polled: keep the section, take its attributes and summary, and
    // keep every row element that did not change (in place, in the new order).
    var oldRows = $("#rows", live);
    var newRows = $("#rows", fresh);
    var nodes = rowNodes(oldRows, newRows);
    if (!nodes) return false;
    Array.prototype.slice.call(fresh.attributes).forEach(function (a) {
      if (live.getAttribute(a.name) !== a.value) live.setAttribute(a.name, a.value);
    });
    if (oldRows.className !== newRows.className) oldRows.className = newRows.className;
    Array.prototype.slice.call(live.children).forEach(function (child) {
      if (child !== oldRows) live.removeChild(child);
    });
    Array.prototype.slice.call(fresh.children).forEach(function (child) {
      if (child !== newRows) live.insertBefore(child, oldRows);
    });
    var cursor = oldRows.firstChild;
    nodes.forEach(function (node) {
      if (node === cursor) cursor = cursor.nextSibling;
      else oldRows.insertBefore(node, cursor);
    });
    while (cursor) {
      var next = cursor.nextSibling;
      oldRows.removeChild(cursor);
      cursor = next;
    }
    return true;
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    var live = event.detail.target;
    var xhr = event.detail.xhr;
    if (!live || live !== liveElement() || !xhr || xhr.status !== 200 || !event.detail.shouldSwap) return;
    var doc = new DOMParser().parseFromString(event.detail.serverResponse, "text/html");
    var fresh = doc.getElementById(live.id);
    var delta = fresh && $("#rows[data-order]", fresh);
    if (!delta && (!fresh || !$("#rows", fresh) || !$("#rows", live) || fresh.getAttribute("hx-get") !== live.getAttribute("hx-get"))) return;
    event.detail.shouldSwap = false; // done here; htmx swaps whole when the filters changed
    if (!$("#rows", live) || !patchGrid(live, document.adoptNode(fresh))) {
      sendVersion = false; // a delta this page cannot apply: ask for every row, now
      setTimeout(poll, 0);
      return;
    }
    if (window.htmx) window.htmx.process(live);
    afterLiveUpdate(live);
  });
  function afterLiveUpdate(live) {
    noteServerTime(live);
    tickTimes();
    updateIdentity();
    tickContact();
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    if (target && target.id === "modal-body") target.classList.add("is-loading");
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    // A form in the dialog may answer 4xx with a message worth showing (e.g. 403).
    var target = event.detail.target;
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (target && target.closest && target.closest("#modal") && status >= 400 && status < 500) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target) return;
    if (target.id === "modal-body") {
      target.classList.remove("is-loading");
      openModal();
    }
  });
  document.addEventListener("credentials-changed", function () { closeAfterSwap = true; });
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (target && target.matches && target.matches("[data-poll]")) afterLiveUpdate(liveElement());
    var dialog = modal();
    if (!dialog || !dialog.open) return;
    var status = $("#modal-body [role=status]");
    if (closeAfterSwap && status) {
      closeAfterSwap = false;
      toast(status.textContent.trim(), !!$(".error", status));
      closeModal();
    } else {
      focusForm();
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    // A button outside the dialog (e.g. "Test") answered with the vault's short fragment.
    var xhr = event.detail.xhr;
    var dialog = modal();
    if (!xhr || (dialog && dialog.contains(event.detail.elt))) return;
    var trigger = xhr.getResponseHeader("HX-Trigger") || "";
    if (trigger.indexOf("credentials-changed") === -1 || !xhr.responseText) return;
    closeAfterSwap = false;
    var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
    var status = doc.querySelector("[role=status]");
    if (status) toast(status.textContent.trim(), !!status.querySelector(".error"));
  });

  // Links that carry the current filters (they change without a reload), e.g. "Wall screen".
  function withQuery(href, toggleWall) {
    var url = new URL(href, window.location.href);
    var params = new URLSearchParams(window.location.search);
    if (toggleWall) {
      if (params.get("wall")) params.delete("wall");
      else params.set("wall", "1");
    }
    url.search = params.toString();
    return url.pathname + url.search;
  }

  // --- keyboard -------------------------------------------------------------------------------------
  function moveFocus(delta) {
    var links = $$(".row-name");
    if (!links.length) return;
    var index = links.indexOf(document.activeElement);
    var next = index < 0 ? (delta > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, index + delta));
    links[next].focus();
    links[next].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    var t = event.target;
    var typing = t.matches && t.matches(
      "input:not([type=checkbox]):not([type=radio]):not([type=submit]):not([type=button]), textarea, select, [contenteditable]"
    );
    if (event.key === "Escape") {
      closeMenus();
      if (typing && t.id === "q") t.blur();
      return;
    }
    var dialog = modal();
    if (typing || (dialog && dialog.open)) return;
    var search = $("#q");
    switch (event.key) {
      case "/":
        if (search) { event.preventDefault(); search.focus(); search.select(); }
        break;
      case "j": moveFocus(1); break;
      case "k": moveFocus(-1); break;
      case "p": {
        var box = $("#problems");
        if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change", { bubbles: true })); }
        break;
      }
      case "w": {
        if ($("[data-wall-toggle]")) window.location.href = withQuery(window.location.pathname, true);
        break;
      }
      case "?": {
        var help = $("#shortcuts");
        if (help) { help.open = true; help.querySelector("summary").focus(); help.scrollIntoView({ block: "nearest" }); }
        break;
      }
      default:
    }
  });

  // "Since you last looked": the page records this load with a POST once shown (the GET that
  // served it changed nothing). A failed POST only means the visit is not extended.
  function recordVisit() {
    var el = $("[data-seen-touch]");
    var url = el && el.getAttribute("data-seen-touch");
    if (!url) return;
    var token = "";
    try { token = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; } catch (e) { token = ""; }
    fetch(url, { method: "POST", headers: { "X-CSRFToken": token }, credentials: "same-origin" }).catch(function () {});
  }

  // --- start ----------------------------------------------------------------------------------------
  function start() {
    noteServerTime(liveElement());
    tickTimes();
    updateIdentity();
    tickContact();
    schedule();
    recordVisit();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
