// wayfinder-sdk: a tiny client for the Wayfinder chat API. No runtime dependencies.
//
//   import { createChatbot } from "wayfinder-sdk";
//   const chatbot = createChatbot({ baseUrl: "http://127.0.0.1:8080" });
//   const first = await chatbot.sendMessage({ widgetId, message: "How do I install the widget?" });
//   const next = await chatbot.sendMessage({ widgetId, message: "And on mobile?", sessionId: first.sessionId });
//
//   // Live: every turn event (status, streamed text, the answer) as it happens.
//   const turn = chatbot.stream({ widgetId, message: "Hi", sessionId: next.sessionId });
//   for await (const event of turn) if (event.delta) process.stdout.write(event.delta);
//
// `sessionId` here is the opaque session token (GraphQL's `sessionToken`), as
// in the REST adapter: pass back what you got to continue the conversation.
// The session's UUID is `conversationId`.
//
// Streaming speaks graphql-ws (`graphql-transport-ws`). Browsers and Node 22+
// have a global WebSocket; on Node 20 pass one: `createChatbot({ WebSocket })`
// with `import WebSocket from "ws"`.

/** A GraphQL or transport error, with the API's `code` (`NOT_FOUND`, `FORBIDDEN`, …). */
export class WayfinderError extends Error {
  constructor(message, { code = "INTERNAL", field, errors } = {}) {
    super(message);
    this.name = "WayfinderError";
    this.code = code;
    this.field = field;
    this.errors = errors;
  }
}

const TURN_EVENT_FIELDS = `seq turnId sessionId messageId status text delta
  citations { articleId title }
  content { kind id name startUrl steps { pageUrl targetSelector title body placement } }
  navigateTo handoffOffered model tokensUsed createdAt`;

const SEND_MESSAGE = `mutation SendMessage($input: TurnInput!) {
  sendMessage(input: $input) {
    turnId sessionId sessionToken status text messageId navigateTo handoffOffered model
    citations { articleId title }
    content { kind id name startUrl steps { pageUrl targetSelector title body placement } }
  }
}`;

const VISIT_PAGE = `mutation VisitPage($input: VisitPageInput!) {
  visitPage(input: $input) {
    sessionToken run
    content { kind id name startUrl steps { pageUrl targetSelector title body placement waitForNavigation locators { kind value } } }
  }
}`;

const REPORT_TOUR_RUN = `mutation ReportTourRun($input: ReportTourRunInput!) {
  reportTourRun(input: $input) { sessionToken accepted ignored }
}`;

const START_TURN = `mutation StartTurn($input: TurnInput!) {
  startTurn(input: $input) { turnId sessionId sessionToken }
}`;

const CHAT_TURN = `subscription ChatTurn($turnId: UUID!, $sessionToken: String) {
  chatTurn(turnId: $turnId, sessionToken: $sessionToken) { ${TURN_EVENT_FIELDS} }
}`;

function toError(errors) {
  const first = errors[0] ?? {};
  return new WayfinderError(first.message ?? "request failed", {
    code: first.extensions?.code,
    field: first.extensions?.field,
    errors,
  });
}

/**
 * A client for one Wayfinder server.
 * @param {import("./index.d.ts").ChatbotOptions} options
 */
export function createChatbot(options = {}) {
  const baseUrl = String(options.baseUrl ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const httpUrl = `${baseUrl}/graphql`;
  const wsUrl = httpUrl.replace(/^http/, "ws");
  const apiKey = options.apiKey;
  const doFetch = options.fetch ?? globalThis.fetch;
  const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;

  /** Runs one GraphQL operation over HTTP; resolves its `data`. */
  async function graphql(query, variables = {}) {
    const headers = { "content-type": "application/json" };
    if (apiKey) headers["x-api-key"] = apiKey;
    let response;
    try {
      response = await doFetch(httpUrl, {
        method: "POST",
        headers,
        body: JSON.stringify({ query, variables }),
      });
    } catch (err) {
      throw new WayfinderError(`cannot reach ${httpUrl}: ${err.message}`, { code: "NETWORK" });
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new WayfinderError(`HTTP ${response.status} without a GraphQL answer`, { code: "HTTP" });
    }
    if (body.errors?.length) throw toError(body.errors);
    return body.data;
  }

  // The signed identity every later message carries (see `identify`).
  let identity = options.identity ?? null;

  /**
   * Identifies the visitor as the host app's signed-in user: `userHash` is
   * `hex(HMAC-SHA256(identitySecret, userId))`, computed by your server (never
   * ship the secret to a browser). `identify(null)` goes back to anonymous.
   */
  function identify(next) {
    identity = next ? { userId: next.userId, userHash: next.userHash, traits: next.traits } : null;
  }

  function turnInput({ widgetId, botId, message, sessionId, pageUrl, userId, userHash, traits }) {
    if (!widgetId && !botId) throw new WayfinderError("give a widgetId or a botId", { code: "BAD_USER_INPUT" });
    const who = userId ? { userId, userHash, traits } : identity ?? {};
    return { widgetId, botId, message, sessionToken: sessionId ?? undefined, pageUrl, ...who };
  }

  /** Runs a whole turn and resolves the reply. */
  async function sendMessage(args) {
    const { sendMessage: r } = await graphql(SEND_MESSAGE, { input: turnInput(args) });
    return {
      reply: r.text,
      sessionId: r.sessionToken,
      conversationId: r.sessionId,
      turnId: r.turnId,
      messageId: r.messageId,
      status: r.status,
      citations: r.citations,
      content: r.content,
      navigateTo: r.navigateTo,
      handoffOffered: r.handoffOffered,
      model: r.model,
    };
  }

  /**
   * Subscribes to one operation over a graphql-ws socket of its own and
   * yields its results (`data`); ends with the operation.
   */
  async function* subscribe(query, variables, connectionParams, signal) {
    if (!WebSocketImpl) {
      throw new WayfinderError(
        "no WebSocket implementation: pass createChatbot({ WebSocket }) (e.g. the ws package on Node 20)",
        { code: "NO_WEBSOCKET" },
      );
    }
    const queue = [];
    let wake = () => {};
    let done = false;
    let failure = null;
    const push = (item) => {
      queue.push(item);
      wake();
    };
    const socket = new WebSocketImpl(wsUrl, "graphql-transport-ws");
    const send = (msg) => socket.send(JSON.stringify(msg));
    const finish = (err) => {
      if (done) return;
      done = true;
      failure = err ?? null;
      wake();
    };
    const onAbort = () => finish(new WayfinderError("aborted", { code: "ABORTED" }));
    signal?.addEventListener?.("abort", onAbort);
    socket.onopen = () => send({ type: "connection_init", payload: connectionParams });
    socket.onerror = () => finish(new WayfinderError(`cannot connect to ${wsUrl}`, { code: "NETWORK" }));
    socket.onclose = (e) => {
      if (!done) finish(new WayfinderError(`socket closed (${e.code} ${e.reason ?? ""})`.trim(), { code: "CLOSED" }));
    };
    socket.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(typeof e.data === "string" ? e.data : String(e.data));
      } catch {
        return;
      }
      switch (msg.type) {
        case "connection_ack":
          send({ id: "1", type: "subscribe", payload: { query, variables } });
          break;
        case "ping":
          send({ type: "pong" });
          break;
        case "next":
          if (msg.payload?.errors?.length && !msg.payload.data) finish(toError(msg.payload.errors));
          else push(msg.payload.data);
          break;
        case "error":
          finish(toError(msg.payload));
          break;
        case "complete":
          finish();
          break;
      }
    };
    try {
      for (;;) {
        if (queue.length) {
          yield queue.shift();
          continue;
        }
        if (done) break;
        await new Promise((resolve) => (wake = resolve));
      }
      if (failure) throw failure;
    } finally {
      signal?.removeEventListener?.("abort", onAbort);
      if (socket.readyState === 1) {
        if (!done) send({ id: "1", type: "complete" });
        socket.close(1000);
      } else if (socket.readyState === 0) {
        socket.onopen = () => socket.close(1000);
      }
    }
  }

  /**
   * Starts a turn (`startTurn`) and streams its events (`chatTurn`) until
   * `COMPLETED`. The result is async-iterable; `started` resolves to the turn
   * and session, including the `sessionId` (token) to continue with.
   */
  function stream(args) {
    const input = turnInput(args);
    let resolveStarted;
    let rejectStarted;
    const started = new Promise((resolve, reject) => {
      resolveStarted = resolve;
      rejectStarted = reject;
    });
    started.catch(() => {});
    async function* events() {
      let r;
      try {
        ({ startTurn: r } = await graphql(START_TURN, { input }));
      } catch (err) {
        rejectStarted(err);
        throw err;
      }
      resolveStarted({ turnId: r.turnId, sessionId: r.sessionToken, conversationId: r.sessionId });
      const params = apiKey ? { apiKey } : { sessionToken: r.sessionToken };
      for await (const data of subscribe(CHAT_TURN, { turnId: r.turnId, sessionToken: r.sessionToken }, params, args.signal)) {
        yield data.chatTurn;
        if (data.chatTurn.status === "COMPLETED") return;
      }
    }
    const iterator = events();
    return { started, [Symbol.asyncIterator]: () => iterator };
  }

  /**
   * For a host app that runs its own tour UI instead of tour.js: what starts
   * by itself on `pageUrl` for this visitor (`visitPage`; audience rules are
   * evaluated on the server), and how a run went (`reportTourRun`, events as
   * tour.js sends them: `{run, id, type, step}` with `type` one of
   * `started`, `step`, `completed`, `dismissed`, `target-missing`). Both
   * resolve `sessionId` (the token to pass back next time).
   */
  const tours = {
    async visitPage({ widgetId, pageUrl, sessionId, ...who }) {
      const { visitPage: r } = await graphql(VISIT_PAGE, {
        input: { widgetId, pageUrl, sessionToken: sessionId ?? undefined, ...(who.userId ? who : identity ?? {}) },
      });
      return { sessionId: r.sessionToken, content: r.content, run: r.run };
    },
    async reportTourRun({ widgetId, pageUrl, sessionId, events, ...who }) {
      const { reportTourRun: r } = await graphql(REPORT_TOUR_RUN, {
        input: { widgetId, pageUrl, events, sessionToken: sessionId ?? undefined, ...(who.userId ? who : identity ?? {}) },
      });
      return { sessionId: r.sessionToken, accepted: r.accepted, ignored: r.ignored };
    },
  };

  return { sendMessage, stream, graphql, subscribe, identify, tours };
}
