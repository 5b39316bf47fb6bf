// Types of wayfinder-sdk. Field names follow the GraphQL schema (schema.graphql).

/** Anything with the browser's WebSocket constructor shape (the `ws` package qualifies). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ChatbotOptions {
  /** The server, e.g. `https://chat.example.com` (default `http://127.0.0.1:8080`). */
  baseUrl?: string;
  /** An org API key (`wf_live_…`): needed for `botId` and dashboard queries; never on a public page. */
  apiKey?: string;
  /** WebSocket implementation for `stream` (default: the global one; on Node 20 pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** fetch implementation (default: the global one). */
  fetch?: typeof fetch;
  /** A signed identity every message carries (same as calling `identify`). */
  identity?: Identity | null;
}

/** The host app's signed-in user. `userHash` is `hex(HMAC-SHA256(identitySecret, userId))`, computed on your server. */
export interface Identity {
  userId: string;
  userHash: string;
  /** Profile traits: at most 50 string, number, boolean or null values (8 KiB in all); they win over traits extracted from chat. */
  traits?: Record<string, string | number | boolean | null>;
}

/** Who answers: a public chat widget, or (with an API key) a bot of your org. */
export type Target = { widgetId: string; botId?: never } | { botId: string; widgetId?: never };

export type SendMessageArgs = Target & {
  /** What the visitor wrote (1 to 4,000 characters). */
  message: string;
  /** The `sessionId` of an earlier reply, to continue that conversation. */
  sessionId?: string | null;
  /** The page the visitor is on (absolute URL or a path). */
  pageUrl?: string;
} & Partial<Identity>;

export type StreamArgs = SendMessageArgs & {
  /** Stops following the turn (the turn itself still completes on the server). */
  signal?: AbortSignal;
};

export type TurnStatus =
  | "ANALYZING"
  | "ANSWER_DELTA"
  | "ANSWERED"
  | "MATCHED_CONTENT"
  | "GENERATED_CONTENT"
  | "NAVIGATING"
  | "FALLBACK"
  | "HANDOFF"
  | "INSUFFICIENT_CREDITS"
  | "ERROR"
  | "COMPLETED";

export interface Citation {
  articleId: string;
  title: string;
}

export interface FlowStep {
  pageUrl: string;
  targetSelector: string;
  title: string;
  body: string;
  placement: string;
}

export interface TurnContent {
  kind: "FLOW" | "TOOLTIP";
  id: string;
  name: string;
  startUrl: string | null;
  steps: FlowStep[];
}

/** One step of a turn, as `chatTurn` streams it. */
export interface TurnEvent {
  /** 1, 2, 3… per turn. */
  seq: number;
  turnId: string;
  /** The session's UUID (GraphQL's `sessionId`; not the token). */
  sessionId: string;
  messageId: string;
  status: TurnStatus;
  text: string;
  /** For `ANSWER_DELTA`: the next piece of the answer. */
  delta: string | null;
  citations: Citation[];
  content: TurnContent | null;
  navigateTo: string | null;
  handoffOffered: boolean;
  model: string | null;
  tokensUsed: number;
  createdAt: string;
}

export interface Reply {
  /** The bot's answer (or canned fallback). */
  reply: string;
  /** Pass it back as `sessionId` to continue the conversation (the session token). */
  sessionId: string;
  /** The session's UUID. */
  conversationId: string;
  turnId: string;
  /** The stored reply, to vote on with `submitFeedback`. */
  messageId: string | null;
  status: TurnStatus;
  citations: Citation[];
  content: TurnContent | null;
  navigateTo: string | null;
  handoffOffered: boolean;
  model: string | null;
}

export interface StartedTurn {
  turnId: string;
  /** Pass it back as `sessionId` to continue the conversation (the session token). */
  sessionId: string;
  conversationId: string;
}

export interface TurnStream extends AsyncIterable<TurnEvent> {
  /** Resolves once `startTurn` answered (rejects if it failed). */
  started: Promise<StartedTurn>;
}

export interface Chatbot {
  /** Runs a whole turn (`sendMessage`) and resolves the reply. */
  sendMessage(args: SendMessageArgs): Promise<Reply>;
  /** Starts a turn (`startTurn`) and yields its events (`chatTurn` over graphql-ws) until `COMPLETED`. */
  stream(args: StreamArgs): TurnStream;
  /** Makes every later message carry this signed identity (`null`: anonymous again). */
  identify(identity: Identity | null): void;
  /** For a host app with its own tour UI: the calls tour.js makes. */
  tours: Tours;
  /** Any GraphQL operation over HTTP (with the API key, if given); resolves `data`. */
  graphql<T = any>(query: string, variables?: Record<string, unknown>): Promise<T>;
  /** Any subscription over a graphql-ws socket of its own; yields each result's `data`. */
  subscribe<T = any>(
    query: string,
    variables: Record<string, unknown>,
    connectionParams: Record<string, unknown>,
    signal?: AbortSignal,
  ): AsyncGenerator<T>;
}

/** One thing a tour runtime saw (tour.js sends its DOM events' detail). */
export interface TourEvent {
  /** The runtime's id of the run (1 to 64 letters, digits, `-`, `_`). */
  run: string;
  /** The flow's or tooltip's id. */
  id: string;
  type: "started" | "step" | "completed" | "dismissed" | "target-missing";
  /** The step, from 0. */
  step: number;
  /** For `target-missing`: the locators tried. */
  locators?: { kind: string; value: string }[];
}

export interface Tours {
  /** What starts by itself on `pageUrl` for this visitor (`visitPage`), if anything; report it under `run`. */
  visitPage(args: { widgetId: string; pageUrl: string; sessionId?: string } & Partial<Identity>): Promise<{
    sessionId: string | null;
    content: Reply["content"];
    run: string | null;
  }>;
  /** Stores how runs went (`reportTourRun`, at most 50 events). */
  reportTourRun(args: { widgetId: string; pageUrl?: string; sessionId?: string; events: TourEvent[] } & Partial<Identity>): Promise<{
    sessionId: string;
    accepted: number;
    ignored: number;
  }>;
}

export function createChatbot(options?: ChatbotOptions): Chatbot;

export class WayfinderError extends Error {
  /** The API's error code (`NOT_FOUND`, `FORBIDDEN`, `BAD_USER_INPUT`, …) or `NETWORK`, `CLOSED`. */
  code: string;
  /** The input field at fault, for `BAD_USER_INPUT`. */
  field?: string;
  /** Every GraphQL error of the answer. */
  errors?: unknown[];
}
