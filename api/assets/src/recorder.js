/*
 * Wayfinder recorder.js: records a site's app map in an org member's own
 * browser, for apps behind a login that no crawler can enter.
 *
 *   <script src="https://HOST/recorder.js" async></script>
 *
 * Source of recorder.min.js: after editing, run `node api/assets/build.mjs`.
 * Never loaded by chat.js and not part of its budget; on a page without a
 * mapping token it does nothing at all.
 *
 * - The token comes from `startSiteRecording`: open its `startUrl` (the
 *   site's URL with `#wayfinder-record=TOKEN`), or load this script with
 *   `data-token="TOKEN"` (the bookmarklet). It is kept in sessionStorage (this
 *   tab, this origin only) and removed from the address bar, so every page
 *   then visited in the tab is recorded until the token expires or the
 *   "Stop" button (or `#wayfinder-record=stop`) ends the recording.
 * - For each page (after load, and again when the DOM has changed and
 *   settled, e.g. after a client-side route change) it computes the
 *   interactive elements and their locators in the real DOM, with the same
 *   kinds and the same rules as the server's crawler (api/src/appmap/
 *   locators.rs): a test id (data-testid, data-test, data-cy, data-qa), a
 *   stable id (not generated-looking), role + accessible name,
 *   aria-label / name / placeholder, visible text, a short structural CSS
 *   path; each kept only when it matches this one element on the page.
 * - Sends `{token, url, title, elements}` to HOST/recorder/pages as
 *   text/plain JSON (no CORS preflight); the server checks the token, the
 *   origin and the bounds, and merges the page into the map.
 * - Shows a small badge in a shadow root, which the page's CSS can't reach
 *   and which is never mapped itself.
 */
(() => {
  let d = document;
  let KEY = "wayfinder:recording";
  let me = d.currentScript;
  let server = new URL(me ? me.src : "/", location.href);
  let endpoint = new URL("/recorder/pages", server).href;
  let token;
  try {
    let m = /wayfinder-record=([^&]+)/.exec(location.hash);
    if (m) {
      if (m[1] == "stop") sessionStorage.removeItem(KEY);
      else sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
      history.replaceState(history.state, "", location.href.replace(/#.*$/, ""));
    }
    if (me && me.dataset.token) sessionStorage.setItem(KEY, me.dataset.token);
    token = sessionStorage.getItem(KEY);
  } catch (e) {
    token = me && me.dataset.token;
  }
  if (!token || window.__wayfinderRecorder) return;
  window.__wayfinderRecorder = 1;

  let INTERACTIVE =
    "a[href], button, input:not([type=hidden]), select, textarea, summary, " +
    "[role=button], [role=link], [role=tab], [role=menuitem], [role=checkbox], [role=switch], " +
    "[role=textbox], [role=combobox], [contenteditable=true]";
  let TEST_IDS = ["data-testid", "data-test", "data-cy", "data-qa"];
  let squash = (s) => (s || "").replace(/\s+/g, " ").trim();
  let text = (el) => squash(el.textContent);
  let attr = (el, a) => el.getAttribute(a);

  // Machine-made ids and segments (numbers, UUIDs, hashes, `:r1:`, `ember123`).
  let generated = (s) => {
    let digits = (s.match(/\d/g) || []).length;
    return (
      !s ||
      s.includes(":") ||
      digits == s.length ||
      (/^[0-9a-f-]+$/i.test(s) && s.length >= 8 && digits > 0) ||
      /\d{3}/.test(s) ||
      (digits * 3 >= s.length && s.length >= 6)
    );
  };
  let ident = (v) => /^[A-Za-z][A-Za-z0-9_-]*$/.test(v);
  let quoted = (v) =>
    v && v.length <= 460 && !/[\x00-\x1f\x7f-\x9f]/.test(v)
      ? '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"'
      : null;
  let unique = (css, el) => {
    try {
      let hits = d.querySelectorAll(css);
      return hits.length == 1 && hits[0] == el;
    } catch (e) {
      return false;
    }
  };

  let ROLES = {
    button: "button", submit: "button", reset: "button", image: "button", file: "button",
    checkbox: "checkbox", radio: "radio", range: "slider", search: "searchbox",
  };
  let role = (el) => {
    let r = squash(attr(el, "role")).split(" ")[0].toLowerCase();
    if (r && r.length <= 30) return r;
    let t = el.localName;
    return t == "a"
      ? "link"
      : t == "button" || t == "summary"
        ? "button"
        : t == "select"
          ? "combobox"
          : t == "textarea"
            ? "textbox"
            : t == "input"
              ? ROLES[(attr(el, "type") || "text").toLowerCase()] || "textbox"
              : "generic";
  };

  // The accessible name, as the crawler approximates it.
  let name = (el) => {
    let v = squash(attr(el, "aria-label"));
    if (v) return v;
    let ids = attr(el, "aria-labelledby");
    if (ids) {
      v = squash(ids.split(/\s+/).map((i) => { let e = d.getElementById(i); return e ? text(e) : ""; }).join(" "));
      if (v) return v;
    }
    let t = el.localName;
    if (t == "input" || t == "select" || t == "textarea") {
      let l = el.id && [...d.querySelectorAll("label[for]")].filter((x) => attr(x, "for") == el.id).pop();
      if (l && (v = text(l))) return v;
      l = el.closest("label");
      if (l && (v = text(l))) return v;
      let k = (attr(el, "type") || "").toLowerCase();
      if (t == "input" && /^(submit|button|reset)$/.test(k))
        return el.hasAttribute("value") ? squash(attr(el, "value")) : k == "reset" ? "Reset" : "Submit";
      if ((v = squash(attr(el, "placeholder")))) return v;
    } else {
      if ((v = text(el))) return v;
      let img = el.querySelector("img[alt]");
      if (img && (v = squash(attr(img, "alt")))) return v;
    }
    return squash(attr(el, "title"));
  };

  let step = (el) => {
    let n = 1;
    for (let s = el.previousElementSibling; s; s = s.previousElementSibling) n += s.localName == el.localName;
    return el.localName + ":nth-of-type(" + n + ")";
  };
  // The shortest structural path matching only `el`, anchored at a stable id when there is one.
  let cssPath = (el) => {
    let parts = [step(el)];
    for (let cur = el, i = 0; i < 12; i++) {
      let css = parts.slice().reverse().join(" > ");
      if (unique(css, el)) return css;
      let p = cur.parentElement;
      if (!p) return null;
      if (p.id && ident(p.id) && !generated(p.id) && unique("#" + p.id + " > " + css, el)) return "#" + p.id + " > " + css;
      if (p.localName == "html") return null;
      parts.push(step(p));
      cur = p;
    }
    return null;
  };

  let count = (m, k) => m.set(k, (m.get(k) || 0) + 1);
  let elements = () => {
    let els = [...d.querySelectorAll(INTERACTIVE)].slice(0, 300);
    let described = els.map((el) => [role(el), name(el), text(el)]);
    let roleNames = new Map();
    let texts = new Map();
    described.forEach(([r, n, t]) => (count(roleNames, r + "\n" + n), count(texts, t)));
    let out = [];
    els.forEach((el, i) => {
      let [r, n, t] = described[i];
      let locators = [];
      let q;
      let push = (kind, css) => css && css.length <= 500 && unique(css, el) && locators.push({ kind, value: css });
      for (let a of TEST_IDS) if ((q = quoted(attr(el, a))) && push("TEST_ID", "[" + a + "=" + q + "]")) break;
      let id = el.id;
      if (id && !generated(id)) push("ID", ident(id) ? "#" + id : (q = quoted(id)) && "[id=" + q + "]");
      if (n && roleNames.get(r + "\n" + n) == 1 && (q = quoted(n)))
        locators.push({ kind: "ROLE", value: "role=" + r + "[name=" + q + "]" });
      for (let [a, pre] of [["aria-label", ""], ["name", el.localName], ["placeholder", ""]])
        if ((q = quoted(attr(el, a))) && push("LABEL", pre + "[" + a + "=" + q + "]")) break;
      if (t && t.length <= 80 && texts.get(t) == 1 && (q = quoted(t))) locators.push({ kind: "TEXT", value: "text=" + q });
      push("CSS", cssPath(el));
      if (!locators.length) return;
      out.push({ role: r, label: (n || attr(el, "name") || r).slice(0, 300), locators: locators.slice(0, 6) });
    });
    return out;
  };

  // The badge.
  let host = d.createElement("wayfinder-recorder");
  let root = host.attachShadow({ mode: "closed" });
  root.innerHTML =
    '<div style="position:fixed;left:12px;bottom:12px;z-index:2147483647;font:13px system-ui,sans-serif;' +
    'background:#b91c1c;color:#fff;padding:6px 10px;border-radius:6px;box-shadow:0 2px 8px #0004">' +
    '<span role="status">Recording for Wayfinder…</span> <button style="font:inherit">Stop</button></div>';
  let status = root.querySelector("span");
  let stop = () => {
    token = null;
    try { sessionStorage.removeItem(KEY); } catch (e) {}
    observer.disconnect();
    host.remove();
  };
  root.querySelector("button").onclick = stop;
  let show = () => (d.body || d.documentElement).appendChild(host);

  let sent = {};
  let posts = 0;
  let send = (leaving) => {
    if (!token || posts >= 200) return;
    let url = location.href.replace(/#.*$/, "");
    let found = elements();
    let signature = JSON.stringify(found);
    if (sent[url] == signature) return;
    sent[url] = signature;
    posts++;
    let body = JSON.stringify({ token, url, title: d.title, elements: found });
    fetch(endpoint, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body,
      // A page left before its send still gets recorded (browsers cap keepalive bodies at 64 KB).
      keepalive: leaving == 1 && body.length < 6e4,
    })
      .then((r) => r.json())
      .then((r) => {
        if (r.error) {
          status.textContent = "Not recorded: " + r.error.message;
          if (r.error.code == "UNAUTHENTICATED") token = null;
        } else {
          status.textContent = "Recorded for Wayfinder: " + found.length + " elements on " + location.pathname;
          host.dataset.mapVersion = r.mapVersion;
        }
      })
      .catch(() => (status.textContent = "Not recorded: the server did not answer"));
  };

  // After load, and whenever the DOM has settled again (client-side routes, late elements).
  let timer;
  let first = 0;
  let later = () => {
    clearTimeout(timer);
    let now = Date.now();
    first = first || now;
    let wait = now - first > 3000 ? 0 : 700;
    timer = setTimeout(() => ((first = timer = 0), send()), wait);
  };
  let observer = new MutationObserver((records) => {
    if (records.some((r) => r.target != host)) later();
  });
  let start = () => {
    show();
    observer.observe(d.documentElement, { childList: true, subtree: true, attributes: true, attributeFilter: ["id", "href", "role", "aria-label"] });
    addEventListener("popstate", later);
    // Leaving with a send pending: send now.
    addEventListener("pagehide", () => timer && (clearTimeout(timer), send(1)));
    later();
  };
  d.readyState == "complete" ? start() : addEventListener("load", start);
})();
