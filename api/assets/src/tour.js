/*
 * Wayfinder tour.js: the walkthrough runtime (flows and tooltips on the page).
 *
 *   <script src="https://HOST/tour.js" data-widget-id="WIDGET-UUID" async></script>
 *
 * chat.js loads it by itself the first time a flow or tooltip is to be shown;
 * a page may also load it on its own (then it also continues runs across
 * pages and starts what auto-starts there). Source of tour.min.js (what the
 * server serves): after editing, run `node api/assets/build.mjs`. Plain
 * modern JS, no dependencies, written for size: the minified file stays
 * under 6,000 bytes.
 *
 * - API: `wayfinder.flows.start(flowOrId)`, `wayfinder.flows.end()`,
 *   `wayfinder.content.show(content)`; chat.js's `wayfinder:content` event
 *   starts the content it carries, and `wayfinder.queued` (what chat.js
 *   wanted shown when it loaded this script) starts when it loads. Content
 *   is `{kind, id, steps}` as the chat's `content` field gives it;
 *   `flowOrId` may be an id of content shown before on this page.
 *   `missing: "END"` on the content ends the flow at a step whose element
 *   can't be found (the default skips the step); `timeoutMs` bounds the wait
 *   for an element (default 6 s).
 * - Each step's element is found by trying its `locators` best first (test
 *   id, id, role + name, label, text, CSS path; `role=…[name="…"]` and
 *   `text="…"` values are matched as the app map computes roles and names,
 *   every other value is a CSS selector), then `targetSelector`: the first
 *   that matches exactly one visible element wins. Until one does, a
 *   MutationObserver (and a slow poll, for style changes) retries, up to the
 *   timeout; the same watcher then follows the element: found again when a
 *   re-render replaced it, the highlight kept on it.
 * - Renders in a shadow root: a highlight around the element and a popover
 *   (role=dialog, labelled by the step title) with the body, "Step n of m",
 *   Back / Next / Done and close; placed on the step's side, flipped when
 *   there is no room, kept on screen, following scroll and resize. Focus moves
 *   to the popover; Escape ends the flow; Tab stays inside.
 * - Tells the page how it went with DOM events on window:
 *   `wayfinder:flow-started`, `-step`, `-completed`, `-dismissed`,
 *   `-target-missing` (detail: `{id, step, of}`, and `locators` for a missing
 *   target: every way that was tried).
 * - Reports the same to the server (`reportTourRun`): what one task did goes
 *   as one batch, with `keepalive` so it survives the page going away; with
 *   the chat's session token (chat.js keeps it per widget in localStorage; a
 *   visitor without one gets one back, kept there for both scripts) and the
 *   signed identity the host put on `window.wayfinder.identity` (`{userId,
 *   userHash, traits}`), if any. The widget is this script's
 *   `data-widget-id`, else chat.js's; with none, nothing is sent.
 * - On load, asks the server what starts by itself on this page for this
 *   visitor (`visitPage`: audience rules and traits never reach the page).
 * - Across pages: a step whose `pageUrl` is another page goes there (with
 *   `waitForNavigation`, it waits for the app to go there); the run is kept
 *   in sessionStorage (this tab only) and carries on after a full page load
 *   or a single-page-app route change (pushState, replaceState, popstate,
 *   hashchange alike: the URL is watched four times a second, the host's
 *   `history` is never patched), for up to 10 minutes after its last step.
 *   A route change to the next step's page moves on to it. One run at a
 *   time: a start ends the run before it, and nothing auto-starts while a
 *   run carries on.
 * - Never throws into the host page.
 */
(() => {
  let d = document;
  let w = window;
  let L = location;
  let J = JSON;
  let safe =
    (f) =>
    (...a) => {
      try {
        return f(...a);
      } catch {}
    };

  safe(() => {
    let W = (w.wayfinder ||= {});
    if (W.flows?.end) return;
    let on = (t, f, o) => w.addEventListener(t, f, o);

    // ---- the server: this script's widget, or chat.js's
    let me = d.querySelector("script[data-widget-id]");
    let wid = me?.dataset.widgetId;
    let K = "wayfinder:" + wid;
    // Storage is reached through a getter: merely touching it may throw.
    let LS = () => localStorage;
    let SS = () => sessionStorage;
    let get = safe((s, k) => J.parse(s()[k]));
    let put = safe((s, k, v) => (s()[k] = J.stringify(v)));
    // `field(input: $i)` with the widget, the session token and the
    // identity; a token that comes back is kept where chat.js keeps its own.
    let post = (f, sel, i) =>
      fetch(new URL("graphql", me.src), {
        method: "POST",
        keepalive: true,
        body: J.stringify({
          query: `mutation($i:${f[0].toUpperCase() + f.slice(1)}Input!){${f}(input:$i){t:sessionToken ${sel}}}`,
          variables: { i: { widgetId: wid, sessionToken: get(LS, K)?.t, pageUrl: L.href, ...W.identity, ...i } },
        }),
      })
        .then((r) => r.json())
        .then(({ data: { [f]: r } }) => (r.t && put(LS, K, { ...get(LS, K), t: r.t }), r))
        .catch(() => 0);
    // Reports wait for the end of the current task (a step and what came
    // with it go as one batch), or go at once before the page does.
    let queue = [];
    let flush = safe(() => {
      let events = queue.splice(0);
      wid && events[0] && post("reportTourRun", "", { events });
    });

    // ---- finding elements (hidden inputs and the like drop out as invisible)
    let squash = (s) => (s || "").replace(/\s+/g, " ").trim();
    let INTERACTIVE =
      "a[href],button,input,select,textarea,summary,[role],[contenteditable]";
    // The ARIA role: explicit, else the tag's (as the app map computes it).
    let roleOf = (e, k = e.type) =>
      (e.role || "").split(" ")[0].toLowerCase() ||
      {
        a: "link",
        button: "button",
        summary: "button",
        select: "combobox",
        textarea: "textbox",
        input: /^(button|submit|reset|image|file)$/.test(k)
          ? "button"
          : /^(checkbox|radio)$/.test(k)
            ? k
            : { range: "slider", search: "searchbox" }[k] || "textbox",
      }[e.localName] ||
      "generic";
    // The accessible name, approximately.
    let nameOf = (e, k = e.type, by = e.getAttribute("aria-labelledby")) =>
      squash(e.ariaLabel) ||
      (by && squash(by.split(" ").map((i) => d.getElementById(i)?.textContent).join(" "))) ||
      (/^(input|select|textarea)$/.test(e.localName)
        ? squash(e.labels[0]?.textContent) ||
          (/^(submit|button|reset)$/.test(k) ? e.value || (k == "reset" ? "Reset" : "Submit") : squash(e.placeholder))
        : squash(e.textContent) || squash(e.querySelector("img[alt]")?.alt));
    // A CSS string literal's content.
    let unquote = (q) => q.slice(1, -1).replace(/\\(.)/g, "$1");
    let visible = (e) => e.checkVisibility({ opacityProperty: 1, visibilityProperty: 1 });
    // The elements one locator value matches.
    let matches = (v, m, all = () => [...d.querySelectorAll(INTERACTIVE)]) => {
      if ((m = v.match(/^role=([\w-]+)\[name=(".*")\]$/)))
        return all().filter((e) => roleOf(e) == m[1] && nameOf(e) == unquote(m[2]));
      if ((m = v.match(/^text=(".*")$/))) return all().filter((e) => squash(e.textContent) == unquote(m[1]));
      try {
        return [...d.querySelectorAll(v)];
      } catch {
        return [];
      }
    };
    // Every way to find a step's element, best first.
    let ways = (s) => [...(s.locators || []), { kind: "CSS", value: s.targetSelector }].filter((l) => l.value);
    // The first element a way matches alone, among the visible ones.
    let find = (s) => {
      for (let l of ways(s)) {
        let v = matches(l.value).filter(visible);
        if (v.length == 1) return v[0];
      }
    };

    // ---- the UI, in a shadow root
    let host;
    let root;
    let ring;
    let pop;
    let [title, body, count, back, next, close] = [];
    let ui = () => {
      if (host?.isConnected) return;
      host = d.createElement("div");
      host.style = "all:initial!important";
      root = host.attachShadow({ mode: "open" });
      root.innerHTML =
        "<style>*{box-sizing:border-box}.r,.p{position:fixed;z-index:2147483647}" +
        ".r{pointer-events:none;border:3px solid #fa0;box-shadow:0 0 0 9999px #0003}" +
        ".p{width:min(340px,100vw - 24px);background:#fff;font:15px system-ui;padding:14px;border-radius:12px;box-shadow:0 4px 20px #0005}" +
        "b{display:block;padding-right:28px}p{white-space:pre-wrap;overflow-wrap:anywhere}.f{display:flex;gap:8px}small{flex:1}" +
        "button{font:inherit;border:1px solid;background:#fff;color:#16e;padding:6px 12px}" +
        ".n{background:#16e;color:#fff}.x{position:absolute;top:6px;right:6px}</style>" +
        "<div class=r></div><div class=p role=dialog aria-labelledby=t aria-describedby=d tabindex=-1>" +
        '<b id=t></b><p id=d></p><div class=f><small aria-live=polite></small><button>Back</button><button class=n>Next</button></div><button class=x aria-label="Close tour">×</button></div>';
      [, ring, pop] = root.children;
      [title, body, { children: [count, back, next] }, close] = pop.children;
      back.onclick = safe(() => go(-1));
      next.onclick = safe(() => go(1));
      close.onclick = safe(dismiss);
      // Escape ends; Tab stays inside (close comes last, the first button first).
      pop.onkeydown = safe((e) => {
        let b = [...pop.querySelectorAll("button")].filter((b) => !b.hidden);
        let [first, last] = e.shiftKey ? [b.at(-1), b[0]] : [b[0], b.at(-1)];
        if (e.key == "Escape") dismiss();
        if (e.key == "Tab" && (root.activeElement == last || !root.activeElement)) {
          e.preventDefault();
          first.focus();
        }
      });
      d.documentElement.append(host);
    };

    // Puts the ring around the element and the popover on the step's side.
    let place = () => {
      if (!run) return;
      let e = run.e;
      let vw = innerWidth;
      let vh = innerHeight;
      let { width: pw, height: ph } = pop.getBoundingClientRect();
      let x = (vw - pw) / 2;
      let y = (vh - ph) / 2;
      ring.hidden = !e;
      if (e) {
        let { left, top, right, bottom, width, height } = e.getBoundingClientRect();
        ring.style.cssText = `left:${left - 6}px;top:${top - 6}px;width:${width + 12}px;height:${height + 12}px`;
        // Room on each side: TOP, BOTTOM, LEFT, RIGHT (k ^ 1 is the opposite side).
        let room = [top - ph, vh - bottom - ph, left - pw, vw - right - pw].map((r) => r - 12);
        let k = ["TOP", "BOTTOM", "LEFT", "RIGHT"].indexOf(run.s[run.i].placement);
        if (k < 0) k = 1;
        if (room[k] < 0) k = room[k ^ 1] >= 0 ? k ^ 1 : +(room[1] >= room[0]);
        if (k < 2) {
          x = left + width / 2 - pw / 2;
          y = k ? bottom + 12 : top - ph - 12;
        } else {
          y = top + height / 2 - ph / 2;
          x = k > 2 ? right + 12 : left - pw - 12;
        }
      }
      let clamp = (v, max) => Math.max(8, Math.min(v, max - 8));
      pop.style.cssText = `left:${clamp(x, vw - pw)}px;top:${clamp(y, vh - ph)}px`;
    };

    // ---- running a flow
    // run: {c: content, s: steps, i: step, q: run key, e: element, o/w/k: watchers}
    let run;
    let seen = {};
    // Tells the page (a DOM event) and the server (its detail, queued).
    let emit = (type, extra) => {
      let detail = { id: run.c.id, step: run.i, of: run.s.length, ...extra };
      w.dispatchEvent(new CustomEvent("wayfinder:flow-" + type, { detail }));
      queue.push({ ...detail, type, run: run.q });
      setTimeout(flush);
    };
    // The run, kept for the next page of this tab.
    let TOUR = K + ":tour";
    let keep = () => put(SS, TOUR, run && { c: run.c, i: run.i, q: run.q, at: Date.now() });
    // Whether step s is on this page (a step without a page is on every page).
    let page = (u) => u.origin + u.pathname;
    let here = (s) => !!s && (!s.pageUrl || page(new URL(s.pageUrl, L)) == page(L));
    // Stops waiting and watching.
    let unwatch = () => {
      run?.o?.disconnect();
      clearTimeout(run?.k);
    };
    let end = (how) => {
      if (!run) return;
      unwatch();
      emit(how);
      run = 0;
      keep();
      flush();
      host?.remove();
    };
    let dismiss = () => end("dismissed");
    let go = (dir) => show(run.i + dir, dir);
    // Shows step i once its element is found (or skips it, or ends). On
    // another page it goes there, unless the step waits for the app to go
    // (or a route change brought us here: then it waits too).
    let show = (i, dir, wait) => {
      unwatch();
      let s = run.s[i];
      if (!s) return i < 0 ? show(0, 1) : end("completed");
      let r = run;
      let shown;
      r.i = i;
      r.e = 0;
      keep();
      // Nothing shows while the element is looked for.
      if (pop) pop.hidden = ring.hidden = 1;
      if (!here(s)) return wait || s.waitForNavigation || (flush(), L.assign(s.pageUrl));
      let want = s.placement != "CENTER";
      let found = (e) => {
        shown = r.e = e;
        e?.scrollIntoView({ block: "center" });
        ui();
        pop.hidden = 0;
        title.textContent = s.title;
        body.textContent = s.body;
        let n = r.s.length;
        count.textContent = n > 1 ? `Step ${i + 1} of ${n}` : "";
        back.hidden = !i;
        next.textContent = i + 1 < n ? "Next" : "Done";
        place();
        pop.focus();
        emit("step");
      };
      // One watcher: until the element is found, looks for it; then follows
      // it (found again when a re-render replaced it).
      let tick = safe(() => {
        if (run != r || r.i != i) return;
        if (!want || shown) {
          if (want && !(r.e.isConnected && visible(r.e))) r.e = find(s) || r.e;
          return place();
        }
        let e = find(s);
        if (e) found(e);
      });
      if (!want) found();
      tick();
      r.o = new MutationObserver(tick);
      r.o.observe(d.body, { childList: true, subtree: true, attributes: true });
      r.w = tick;
      r.k = setTimeout(
        safe(() => {
          if (run != r || shown || !want) return;
          emit("target-missing", { locators: ways(s) });
          r.c.missing == "END" ? dismiss() : show(i + (dir || 1), dir);
        }),
        r.c.timeoutMs || 6e3,
      );
    };

    // Starts content (a flow or a tooltip), ending the one running; `q` is
    // the run key the server gave an auto-started run.
    let start = (c, q) => {
      c = c?.steps ? c : seen[c];
      if (!c?.steps?.length) return false;
      seen[c.id] = c;
      dismiss();
      run = { c, s: c.steps, i: 0, q: q || "r" + Date.now() };
      emit("started");
      show(0, 1);
      return true;
    };
    // After a load or a route change: the step of this page (the current
    // one, or the next when the visitor went there), else wait.
    let sync = safe(() => run && show(run.i + (!here(run.s[run.i]) && here(run.s[run.i + 1])), 1, 1));
    W.flows = { start: safe(start), end: safe(dismiss) };
    W.content = { show: W.flows.start };
    on("wayfinder:content", safe((e) => start(e.detail)));
    // What chat.js asked to show before it loaded this script.
    W.queued && start(W.queued);
    let follow = safe(place);
    on("scroll", follow, true);
    on("resize", follow);
    // Four times a second: route changes of a single-page app (the URL is
    // watched), else the running step's watcher (for style changes, which
    // no MutationObserver on the body sees).
    let url = L.href;
    setInterval(() => (url != L.href ? ((url = L.href), sync()) : run?.w?.()), 250);
    // A run of this tab carries on; otherwise, what starts by itself here.
    let kept = !run && get(SS, TOUR);
    if (kept?.at > Date.now() - 6e5) {
      run = { ...kept, s: kept.c.steps };
      sync();
    } else
      wid &&
        !run &&
        post(
          "visitPage",
          "run content{id steps{pageUrl targetSelector title body placement waitForNavigation locators{kind value}}}",
        )
          .then((r) => r.content && !run && start(r.content, r.run));
  })();
})();
