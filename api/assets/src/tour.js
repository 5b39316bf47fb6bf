/*
 * Wayfinder tour.js: the walkthrough runtime (flows and tooltips on the page).
 *
 *   <script src="https://HOST/tour.js" async></script>
 *
 * chat.js loads it by itself the first time a flow or tooltip is to be shown;
 * a page may also load it on its own. Source of tour.min.js (what the server
 * serves): after editing, run `node api/assets/build.mjs`. Plain modern JS, no
 * dependencies, written for size: the minified file stays under 6,000 bytes.
 *
 * - API: `wayfinder.flows.start(flowOrId)`, `wayfinder.flows.end()`,
 *   `wayfinder.content.show(content)`; chat.js's `wayfinder:content` event
 *   starts the content it carries, and `wayfinder.queued` (what chat.js
 *   wanted shown when it loaded this script) starts when it loads. Content is `{kind, id, steps}` as the
 *   chat's `content` field gives it; `flowOrId` may be an id of content shown
 *   before on this page. `missing: "END"` on the content ends the flow at a
 *   step whose element can't be found (the default skips the step);
 *   `timeoutMs` bounds the wait for an element (default 6 s).
 * - Each step's element is found by trying its `locators` best first (test
 *   id, id, role + name, label, text, CSS path), then `targetSelector`: the
 *   first that matches exactly one visible element wins. Until one does, a
 *   MutationObserver (and a slow poll, for style changes) retries, up to the
 *   timeout. When the element leaves the page (a re-render) it is found again.
 * - Renders in a shadow root: a highlight around the element and a popover
 *   (role=dialog, labelled by the step title) with the body, "Step n of m",
 *   Back / Next / Done and close; placed on the step's side, flipped when
 *   there is no room, kept on screen, following scroll and resize. Focus moves
 *   to the popover; Escape ends the flow; Tab stays inside.
 * - Tells the page how it went with DOM events on window:
 *   `wayfinder:flow-started`, `-step`, `-completed`, `-dismissed`,
 *   `-target-missing` (detail: `{id, step, of}`, and `locators` for a missing
 *   target: every way that was tried).
 * - Never throws into the host page.
 *
 * Not yet: continuing across page loads and single-page-app route changes
 * (a step whose page is another page is looked for on this one), and sending
 * the reports to the server.
 */
(() => {
  let d = document;
  let w = window;
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

    // ---- finding elements
    let squash = (s) => (s || "").replace(/\s+/g, " ").trim();
    let INTERACTIVE =
      "a[href],button,input:not([type=hidden]),select,textarea,summary,[role],[contenteditable=true]";
    // The ARIA role: explicit, else the tag's (as the app map computes it).
    let roleOf = (e) => {
      let r = e.getAttribute("role");
      let t = e.localName;
      let k = e.type;
      return r
        ? r.split(" ")[0].toLowerCase()
        : t == "a"
          ? "link"
          : t == "button" || t == "summary" || /^(button|submit|reset|image|file)$/.test(k)
            ? "button"
            : t == "select"
              ? "combobox"
              : t == "textarea"
                ? "textbox"
                : t == "input"
                  ? { checkbox: "checkbox", radio: "radio", range: "slider", search: "searchbox" }[k] || "textbox"
                  : "generic";
    };
    // The accessible name, approximately.
    let nameOf = (e) => {
      let l = squash(e.ariaLabel);
      let by = e.getAttribute("aria-labelledby");
      if (!l && by) l = squash(by.split(" ").map((i) => d.getElementById(i)?.textContent).join(" "));
      if (l) return l;
      if (/^(input|select|textarea)$/.test(e.localName)) {
        let k = e.type;
        return (
          squash(e.labels[0]?.textContent) ||
          (/^(submit|button|reset)$/.test(k) ? e.value || (k == "reset" ? "Reset" : "Submit") : squash(e.placeholder))
        );
      }
      return squash(e.textContent) || squash(e.querySelector("img[alt]")?.alt);
    };
    // A CSS string literal's content.
    let unquote = (q) => q.slice(1, -1).replace(/\\(.)/g, "$1");
    let visible = (e) => {
      let s = getComputedStyle(e);
      return e.getClientRects().length && s.visibility != "hidden" && s.opacity != "0";
    };
    // The elements one locator matches.
    let matches = ({ kind: k, value: v }) => {
      let all = () => [...d.querySelectorAll(INTERACTIVE)];
      let m;
      if (k == "ROLE" && (m = v.match(/^role=([\w-]+)\[name=(".*")\]$/)))
        return all().filter((e) => roleOf(e) == m[1] && nameOf(e) == unquote(m[2]));
      if (k == "TEXT" && (m = v.match(/^text=(".*")$/))) return all().filter((e) => squash(e.textContent) == unquote(m[1]));
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
        let v = matches(l).filter(visible);
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
        "<style>*{box-sizing:border-box}.r,.p{position:fixed;z-index:2147483646}" +
        ".r{pointer-events:none;border:3px solid #f59e0b;border-radius:8px;box-shadow:0 0 0 9999px #0003;transition:all .15s}" +
        ".p{z-index:2147483647;width:min(340px,100vw - 24px);background:#fff;color:#1b1f24;font:15px/1.45 system-ui,sans-serif;padding:14px 16px;border-radius:12px;box-shadow:0 8px 30px #0005;outline:0}" +
        "b{display:block;font-size:16px;padding-right:28px}p{margin:6px 0 12px;white-space:pre-wrap;overflow-wrap:anywhere}" +
        ".f{display:flex;align-items:center;gap:8px}small{flex:1;color:#57606a}" +
        "button{font:inherit;cursor:pointer;border:1px solid #1f6feb;background:#fff;color:#1f6feb;border-radius:8px;padding:6px 12px;min-height:36px}" +
        ".n{background:#1f6feb;color:#fff}.x{position:absolute;top:6px;right:6px;border:0;font-size:20px;padding:2px 8px;color:#57606a}" +
        "button:focus-visible{outline:2px solid #f59e0b;outline-offset:2px}[hidden]{display:none}</style>" +
        "<div class=r></div><div class=p role=dialog aria-labelledby=t aria-describedby=d tabindex=-1>" +
        '<b id=t></b><p id=d></p><div class=f><small aria-live=polite></small><button>Back</button><button class=n>Next</button></div><button class=x aria-label="Close tour">×</button></div>';
      [, ring, pop] = root.children;
      [title, body, { children: [count, back, next] }, close] = pop.children;
      back.onclick = safe(() => go(-1));
      next.onclick = safe(() => go(1));
      close.onclick = safe(() => end("dismissed"));
      // Escape ends; Tab stays inside (close comes last, the first button first).
      pop.onkeydown = safe((e) => {
        let b = [...pop.querySelectorAll("button")].filter((b) => !b.hidden);
        let [first, last] = e.shiftKey ? [b.at(-1), b[0]] : [b[0], b.at(-1)];
        if (e.key == "Escape") end("dismissed");
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
      let s = run.s[run.i];
      let e = run.e;
      let vw = innerWidth;
      let vh = innerHeight;
      let p = pop.getBoundingClientRect();
      let G = 12;
      let x = (vw - p.width) / 2;
      let y = (vh - p.height) / 2;
      ring.hidden = !e;
      if (e) {
        let r = e.getBoundingClientRect();
        ring.style.cssText = `left:${r.left - 6}px;top:${r.top - 6}px;width:${r.width + 12}px;height:${r.height + 12}px`;
        let room = {
          TOP: r.top - p.height - G,
          BOTTOM: vh - r.bottom - p.height - G,
          LEFT: r.left - p.width - G,
          RIGHT: vw - r.right - p.width - G,
        };
        let flip = { TOP: "BOTTOM", BOTTOM: "TOP", LEFT: "RIGHT", RIGHT: "LEFT" };
        let side = s.placement in room ? s.placement : "BOTTOM";
        if (room[side] < 0) side = room[flip[side]] >= 0 ? flip[side] : room.BOTTOM >= room.TOP ? "BOTTOM" : "TOP";
        if (side == "TOP" || side == "BOTTOM") {
          x = r.left + r.width / 2 - p.width / 2;
          y = side == "TOP" ? r.top - p.height - G : r.bottom + G;
        } else {
          y = r.top + r.height / 2 - p.height / 2;
          x = side == "LEFT" ? r.left - p.width - G : r.right + G;
        }
      }
      let clamp = (v, max) => Math.max(8, Math.min(v, max - 8));
      pop.style.cssText = `left:${clamp(x, vw - p.width)}px;top:${clamp(y, vh - p.height)}px`;
    };

    // ---- running a flow
    let run;
    let seen = {};
    let emit = (type, extra) =>
      w.dispatchEvent(
        new CustomEvent("wayfinder:flow-" + type, {
          detail: { id: run.c.id, step: run.i, of: run.s.length, ...extra },
        }),
      );
    // Stops waiting and watching.
    let unwatch = () => {
      run?.o?.disconnect();
      clearInterval(run?.t);
      clearTimeout(run?.k);
    };
    let end = (how) => {
      if (!run) return;
      unwatch();
      emit(how);
      run = 0;
      host?.remove();
    };
    let go = (dir) => show(run.i + dir, dir);
    // Shows step i, once its element is found (or skips it, or ends).
    let show = (i, dir) => {
      unwatch();
      let s = run.s[i];
      if (!s) return i < 0 ? show(0, 1) : end("completed");
      let r = run;
      r.i = i;
      r.e = 0;
      // Nothing shows while the element is looked for.
      if (pop) pop.hidden = ring.hidden = 1;
      let want = s.placement != "CENTER";
      let found = (e) => {
        r.e = e;
        if (e) e.scrollIntoView({ block: "center", inline: "nearest" });
        ui();
        pop.hidden = 0;
        title.textContent = s.title || "";
        body.textContent = s.body || "";
        let n = r.s.length;
        count.textContent = n > 1 ? `Step ${i + 1} of ${n}` : "";
        back.hidden = !i;
        next.textContent = i + 1 < n ? "Next" : "Done";
        place();
        pop.focus();
        emit("step");
        // Follows the element: found again when a re-render replaced it.
        r.o = new MutationObserver(
          safe(() => {
            if (want && !(r.e?.isConnected && visible(r.e))) r.e = find(s) || r.e;
            place();
          }),
        );
        r.o.observe(d.body, { childList: true, subtree: true, attributes: true });
      };
      if (!want) return found();
      let e = find(s);
      if (e) return found(e);
      // Waits for a late element, up to the timeout.
      let retry = safe(() => {
        let e = run == r && find(s);
        if (e) unwatch(), found(e);
      });
      r.o = new MutationObserver(retry);
      r.o.observe(d.body, { childList: true, subtree: true, attributes: true });
      r.t = setInterval(retry, 250);
      r.k = setTimeout(
        safe(() => {
          if (run != r) return;
          emit("target-missing", { locators: ways(s) });
          r.c.missing == "END" ? end("dismissed") : show(i + (dir || 1), dir);
        }),
        r.c.timeoutMs || 6e3,
      );
    };

    // Starts content (a flow or a tooltip), ending the one running.
    let start = (c) => {
      c = typeof c == "object" ? c : seen[c];
      if (!c?.steps?.length) return false;
      if (c.id) seen[c.id] = c;
      end("dismissed");
      run = { c, s: c.steps, i: 0 };
      emit("started");
      show(0, 1);
      return true;
    };
    W.flows = { start: safe(start), end: safe(() => end("dismissed")) };
    W.content = { show: W.flows.start };
    w.addEventListener("wayfinder:content", safe((e) => start(e.detail)));
    // What chat.js asked to show before it loaded this script.
    W.queued && start(W.queued);
    let follow = safe(place);
    w.addEventListener("scroll", follow, { capture: true, passive: true });
    w.addEventListener("resize", follow);
  })();
})();
