/*
 * Wayfinder chat.js: the floating chat bubble and panel.
 *
 *   <script src="https://HOST/chat.js" data-widget-id="WIDGET-UUID" async></script>
 *
 * Source of chat.min.js (what the server serves): after editing, run
 * `node api/assets/build.mjs` (needs `npm ci` in tests/browser); the browser
 * test run fails while chat.min.js is stale. Plain modern JS, no dependencies.
 * Written for size: the minified file must stay under 6 KB (6,000 bytes).
 *
 * - Renders a bubble in a shadow root: the page's CSS can't reach inside, and
 *   the host element resets itself with an inline `all:initial!important`.
 * - On the first open, loads `widgetConfig` (colours, labels, greeting):
 *   `primaryColor` fills the bubble, header, the visitor's messages and buttons,
 *   and colours links; `accentColor` is the text on it (white by default).
 * - Sends each message with `startTurn` (HTTP POST, as text/plain JSON so a
 *   cross-origin page needs no CORS preflight) and follows the turn with
 *   `chatTurn` over graphql-ws (`graphql-transport-ws`, spoken here: init with
 *   the session token, pong to pings, resubscribe after reconnecting with
 *   backoff; replayed events are skipped by their `seq`).
 * - Keeps the session token per widget in localStorage; after a reload, the
 *   conversation is replayed with `sessionEvents`.
 * - Shows the status line, the streamed answer, citations, votes
 *   (`submitFeedback`), the hand-off button (`requestHandoff`) and the
 *   "Start walkthrough" pill (then "↻ Restart walkthrough"), which dispatches
 *   `wayfinder:content` on window with `{kind, id, startUrl, steps}` (steps
 *   with their locators) and, when the start page is another page, goes there
 *   (the host's tour runtime, which got the steps, carries on there); on this
 *   page, it loads tour.js (the walkthrough runtime) the first time, unless
 *   the page already has a runtime on `wayfinder.content`.
 * - Identity: `wayfinder.identify({userId, userHash, traits})` makes every
 *   message carry the host app's signed user (README, "Visitor identity").
 * - Never throws into the host page: every entry point is wrapped.
 *
 * Citations link to `#wayfinder-article-<articleId>` (the API has no article
 * URL): a help center can route that fragment to its own article page.
 */
(() => {
  let d = document;
  let w = window;
  let L = location;
  let J = JSON;
  // Nothing a wrapped function throws (or rejects with) reaches the page.
  let safe =
    (f) =>
    (...a) => {
      try {
        let r = f(...a);
        r?.catch?.(safe);
        return r;
      } catch {}
    };
  // A URL without its query and fragment.
  let page = (u) => u.origin + u.pathname;

  safe(() => {
    let me = d.currentScript || d.querySelector("[data-widget-id]");
    let wid = me.dataset.widgetId;
    let KEY = "wayfinder:" + wid;
    if (w[KEY]) return;
    w[KEY] = 1;
    let base = new URL(".", me.src);
    let http = base + "graphql";

    // Stored per widget: { t: session token, s: session id } (startTurn's
    // result, aliased to those names; its turnId comes along).
    let S = {};
    let save = (v) => {
      S = v;
      try {
        localStorage[KEY] = J.stringify(S);
      } catch {}
    };
    try {
      S = J.parse(localStorage[KEY]) || {};
    } catch {}
    // Signed identity from the host app, sent with every message:
    // `wayfinder.identify({userId, userHash, traits})` (or `window.wayfinder =
    // {identity: {…}}` before this script loads); `identify(null)` on sign-out
    // also forgets the conversation.
    let W = (w.wayfinder ||= {});
    let I = W.identity;
    W.identify = (x) => (I = x || save({}));

    // ---- GraphQL over HTTP: `field(arg: $i)` of a one-field operation. The
    // body goes as text/plain (the server reads JSON whatever the type), so a
    // cross-origin page needs no CORS preflight. An input object (`i` not a
    // string) gets the session token. GraphQL errors are thrown as they are
    // ({message, extensions}).
    let gql = async (field, type, selection, i, op = "mutation", arg = "input") => {
      let j = await (
        await fetch(http, {
          method: "POST",
          body: J.stringify({
            query: `${op}($i:${type}!){${field}(${arg}:$i){${selection}}}`,
            variables: { i: i[0] ? i : { sessionToken: S.t, ...i } },
          }),
        })
      ).json();
      if (j.errors) throw j.errors[0];
      return j.data[field];
    };

    // ---- graphql-ws: just what the widget needs.
    let ws;
    let ready;
    let tries = 0;
    let seq = 0;
    let ops = {};
    let send = (m) => ws.send(J.stringify(m));
    let connect = () => {
      if (ws) return;
      ws = new WebSocket(http.replace(/^http/, "ws"), "graphql-transport-ws");
      ws.onopen = safe(() => send({ type: "connection_init", payload: { sessionToken: S.t } }));
      ws.onmessage = safe((e) => {
        let { id, type: t, payload: p } = J.parse(e.data);
        let o = ops[id];
        if (t == "connection_ack") {
          ready = 1;
          tries = 0;
          for (let id in ops) send(ops[id].m);
        }
        if (t == "ping") send({ type: "pong" });
        if (o) {
          if (t == "next") p.data ? o.n(p.data) : o.e(p.errors[0]);
          else {
            delete ops[id];
            if (t == "error") o.e(p[0]);
          }
        }
      });
      // Operations still live are resubscribed after a backoff.
      ws.onclose = safe(() => {
        ws = ready = 0;
        for (let _ in ops) return setTimeout(safe(connect), Math.min(3e4, 500 * 2 ** tries++));
      });
    };
    // Subscribes to `chatTurn(turnId` or `sessionEvents(sessionId` for id `i`,
    // with the session token; each event goes to onEvent.
    let subscribe = (field, i, e) => {
      let id = "" + ++seq;
      let m = {
        id,
        type: "subscribe",
        payload: {
          query: `subscription($i:UUID!,$k:String){${field}:$i,sessionToken:$k){seq turnId status text delta messageId handoffOffered navigateTo citations{articleId title} content{kind id startUrl steps{pageUrl targetSelector title body placement locators{kind value}}}}}`,
          variables: { i, k: S.t },
        },
      };
      ops[id] = { m, n: safe((x) => onEvent(x[field.split("(")[0]])), e: safe(e || fail) };
      ready ? send(m) : connect();
      return () => {
        delete ops[id];
        ready && send({ id, type: "complete" });
      };
    };

    // ---- the UI, in a shadow root
    // Text is always set as text, never as markup.
    let el = (tag, text, parent) => {
      let e = parent.appendChild(d.createElement(tag));
      e.append(text || "");
      return e;
    };
    // On <html>, beside <body>: there even before <body> is parsed, and out of reach of body styles.
    // The default colours are set here too; widgetConfig's follow them.
    let host = el("div", "", d.documentElement);
    host.style = "all:initial!important;--p:#1f6feb;--a:#fff";
    let root = host.attachShadow({ mode: "open" });
    root.innerHTML =
      "<style>.b,.p{position:fixed;right:20px;z-index:2147483647;font:14px system-ui;box-shadow:0 4px 20px #0004}" +
      "button,input{font:inherit;border:0;background:0;color:inherit;border-radius:9px;padding:4px 8px}button{cursor:pointer}" +
      ".b{bottom:20px;width:56px;height:56px;border-radius:50%}" +
      ".p{bottom:88px;width:min(370px,100% - 40px);height:min(540px,100% - 108px);background:#fff;border-radius:12px;display:flex;flex-flow:column;overflow:hidden}" +
      "[hidden]{display:none}" +
      ".h{display:flex;padding:8px 12px}#t{flex:1}" +
      ".l{flex:1;overflow:auto;padding:12px}" +
      ".m{width:fit-content;max-width:85%;margin:0 0 8px;padding:8px;border-radius:9px;white-space:pre-wrap;overflow-wrap:anywhere;background:#eee}" +
      ".u{margin-left:auto}" +
      ".b,.h,.u,form button{background:var(--p);color:var(--a)}" +
      "a{display:block}a,.m button{color:var(--p)}" +
      ".m button{border:1px solid;margin:4px 4px 0 0}" +
      "small{padding:0 12px;color:#666}" +
      "form{display:flex;padding:8px;gap:6px}input{flex:1;border:1px solid #bbb}" +
      "@media(max-width:480px){.p{inset:0;width:auto;height:auto}}</style>" +
      '<button class=b aria-label="Open chat" aria-expanded=false aria-controls=p>' +
      '<svg width=26 height=26 fill=currentColor><path d="M4 4h18v13H9l-5 5z"/></svg></button>' +
      "<div class=p id=p role=dialog aria-modal=true aria-labelledby=t hidden>" +
      '<div class=h><b id=t>Chat</b><button aria-label="Close chat">×</button></div>' +
      "<div class=l role=log aria-live=polite></div><small role=status></small>" +
      '<form><input aria-label=Message maxlength=4000 autocomplete=off placeholder="Ask a question…"><button>Send</button></form></div>';
    // (The <style> comes first.)
    let [, bubble, panel] = root.children;
    let [{ children: [title, close] }, list, status, form] = panel.children;
    let [input, sendButton] = form.children;

    let add = (cls, text) => {
      let m = el("div", text, list);
      m.className = "m " + cls;
      list.scrollTop = 1e9;
      return m;
    };
    let button = (m, text, onclick) => {
      let b = el("button", text, m);
      b.onclick = safe(onclick);
      return b;
    };
    // say() clears the status line.
    let say = (text) => (status.textContent = text);
    let fail = (e) => (say(), add("", e.message));

    let config;
    let handoff;
    let stopHistory;
    // Returns the configuration's promise when opening, so `safe` sees its errors.
    let toggle = (v) => ((bubble.ariaExpanded = !(panel.hidden = !v)), v ? (input.focus(), load()) : bubble.focus());
    // The bubble opens and closes the panel, the close button closes it.
    close.onclick = bubble.onclick = safe(() => toggle(panel.hidden));

    // Escape closes; Tab stays inside the open panel.
    // (The close button comes first in the panel, the send button last.)
    panel.onkeydown = safe((e) => {
      let [first, last] = e.shiftKey ? [sendButton, close] : [close, sendButton];
      if (e.key == "Escape") toggle();
      if (e.key == "Tab" && root.activeElement == last) {
        e.preventDefault();
        first.focus();
      }
    });

    // ---- turns: each turn's events in seq order, rendered into the log
    let LOOKING = "Looking that up…";
    let turns = {};

    let onEvent = (ev) => {
      let t = (turns[ev.turnId] ||= {});
      let s = ev.status;
      let c = ev.content;
      if (ev.seq <= t.q) return;
      t.q = ev.seq;
      // (COMPLETED changes nothing: the reply before it made the bot's message.)
      if (s == "ANALYZING") return say(LOOKING), (t.u ||= add("u", ev.text));
      // The matcher's and generator's LLM calls are bookkeeping: keep the status line.
      if (s == "MATCHING" || s == "GENERATING") return;
      say();
      let m = (t.a ||= add(""));
      let x = m.firstChild;
      x.data = ev.delta ? x.data + ev.delta : ev.text || x.data;
      list.scrollTop = 1e9;
      for (let c of ev.citations) el("a", c.title, m).href = "#wayfinder-article-" + c.articleId;

      if (c) {
        let b = button(m, "Start walkthrough", () => {
          let url = new URL(ev.navigateTo || c.startUrl || L, L);
          b.textContent = "↻ Restart walkthrough";
          // Left for tour.js, which shows it when it loads.
          W.queued = { ...c, startUrl: url.href };
          w.dispatchEvent(new CustomEvent("wayfinder:content", { detail: W.queued }));
          if (page(url) != page(L)) L.href = url;
          // No tour runtime on the page yet: load tour.js. (A page with its own
          // runtime defines `wayfinder.content` to keep tour.js away.)
          else W.content || (el("script", "", d.head).src = base + "tour.js");
        });
      }

      // Hand-off: the message box asks for an email address, and the next send hands off.
      if (ev.handoffOffered) {
        let b = button(m, config.labels?.handoffButton || "Talk to a person", () => {
          b.remove();
          handoff = input.placeholder;
          input.placeholder = "Your email";
          input.type = "email";
          input.focus();
        });
      }

      if (s == "ANSWERED") {
        let r = el("div", "Helpful?", m);
        for (let v of ["Yes", "No"])
          button(r, v, () =>
            gql("submitFeedback", "SubmitFeedbackInput", "ok", {
              messageId: ev.messageId,
              vote: v == "Yes" ? "UP" : "DOWN",
            }).then(() => (r.textContent = "Thanks!")),
          );
      }
    };

    // Loads the configuration once (again after a failure).
    let load = () =>
      config ||
      (config = gql(
        "widgetConfig",
        "UUID",
        "personaName greeting primaryColor accentColor labels{title inputPlaceholder sendButton handoffButton}",
        wid,
        "query",
        "widgetId",
      ).then((c) => {
        config = c;
        let l = c.labels;
        host.style.cssText += `--p:${c.primaryColor};--a:${c.accentColor}`;
        title.textContent = l.title || c.personaName;
        input.placeholder = l.inputPlaceholder || input.placeholder;
        sendButton.textContent = l.sendButton || "Send";
        add("", c.greeting);
        if (S.s)
          stopHistory = subscribe(
            "sessionEvents(sessionId",
            S.s,
            // The stored session is gone or its token no longer valid: start afresh.
            () => save({}),
          );
      }, (e) => fail(e, (config = 0))));

    form.onsubmit = safe(async (e) => {
      let q = input.value.trim();
      e.preventDefault();
      if (!q) return;
      input.value = "";
      if (handoff) {
        input.placeholder = handoff;
        handoff = input.type = "";
        let r = await gql("requestHandoff", "RequestHandoffInput", "message", { email: q }).catch(fail);
        return r && add("", r.message);
      }
      stopHistory?.();
      let u = add("u", q);
      say(LOOKING);
      let r = await gql("startTurn", "TurnInput", "turnId s:sessionId t:sessionToken", {
        ...I,
        widgetId: wid,
        message: q,
        pageUrl: L.protocol[0] == "h" ? page(L) : null,
      }).catch((x) => {
        // A stale or foreign session token: the next message starts a new conversation.
        if (x.extensions?.code == "FORBIDDEN") save({});
        fail(x);
      });
      if (!r) return;
      save(r);
      turns[r.turnId] = { u };
      subscribe("chatTurn(turnId", r.turnId);
    });
  })();
})();
