// The REST API and the WebSocket, with relative URLs only: the page works at `/` and under Home Assistant ingress.

const TOKEN = "aniworld.token"; // a session token from POST api/auth/login (sent as Authorization: Bearer)
const KEY = "aniworld.apikey"; // the API key (sent as X-Api-Key; in the WebSocket URL as ?api_key=)

/** An answer of the API that is not a success: its status, code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Credentials kept in the browser. */
export const credentials = {
  get token() { return localStorage.getItem(TOKEN); },
  get key() { return localStorage.getItem(KEY); },
  setToken(value) { localStorage.setItem(TOKEN, value); localStorage.removeItem(KEY); },
  setKey(value) { localStorage.setItem(KEY, value); localStorage.removeItem(TOKEN); },
  clear() { localStorage.removeItem(TOKEN); localStorage.removeItem(KEY); },
  headers() {
    if (this.token) return { Authorization: `Bearer ${this.token}` };
    if (this.key) return { "X-Api-Key": this.key };
    return {};
  },
};

let onUnauthorized = () => {};

/** Called whenever the API answers 401 (the credentials are gone or wrong). */
export function setUnauthorizedHandler(handler) { onUnauthorized = handler; }

/** Call `method path` (relative, e.g. `api/queue/status`) with a JSON body; the JSON answer (null for none). */
export async function api(method, path, body) {
  const headers = { ...credentials.headers() };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "unreachable", "the daemon does not answer");
  }
  const type = response.headers.get("Content-Type") || "";
  const data = response.status !== 204 && type.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401 && !path.startsWith("api/auth/")) onUnauthorized();
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
  }
  return data;
}

/** The WebSocket URL of this page's daemon (ws: or wss:), with the stored key or token for browsers. */
export function socketUrl() {
  const url = new URL("ws/connect", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  const secret = credentials.token || credentials.key;
  if (secret) url.searchParams.set("api_key", secret);
  return url.href;
}

const ROOMS = ["downloads", "download_progress", "scan_progress", "system"];

/**
 * The live stream: joins every room, reconnects by itself (joining with `since` after a drop), and tells
 * `handlers.message(msg)`, `handlers.status("open" | "reconnecting")` and `handlers.reconnected()`.
 */
export class Stream {
  constructor(handlers) {
    this.handlers = handlers;
    this.lastSeq = null;
    this.delay = 500;
    this.everOpen = false;
    this.stopped = false;
    this.socket = null;
    this.timer = null;
  }

  start() { this.stopped = false; this.connect(); }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
  }

  connect() {
    let socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch (err) {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", () => {
      if (this.socket === socket) this.retry();
    });
  }

  retry() {
    this.socket = null;
    if (this.stopped) return;
    this.handlers.status("reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 4000);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (err) {
      return;
    }
    if (message.type === "connected") {
      const serverSeq = message.data.seq;
      // A restarted daemon counts from scratch: a `since` beyond its newest event would be a gap never filled.
      const since = this.lastSeq !== null && this.lastSeq <= serverSeq ? this.lastSeq : null;
      if (since === null) this.lastSeq = null;
      for (const room of ROOMS) this.send(since === null ? { action: "join", room } : { action: "join", room, since });
      this.delay = 500;
      this.handlers.status("open");
      if (this.everOpen) this.handlers.reconnected();
      this.everOpen = true;
      return;
    }
    if (typeof message.seq === "number") this.lastSeq = Math.max(this.lastSeq ?? 0, message.seq);
    this.handlers.message(message);
  }
}
