// The WebSocket to ws_bridge (docs/WEBSOCKET.md): authenticated with the access token as a subprotocol,
// reconnected with backoff, kept alive with application pings, extended with `auth` frames when the token is
// refreshed. Resuming runs is the caller's job: it gets an "open" event after each (re)connection and sends its
// `subscribe` frames with after_seq then.

const POLICY = 1008;
const RESTART = 1012;
const TOKEN_EXPIRED = 4001;
const PONG_TIMEOUT_MS = 10_000;

function subprotocols(token) {
  const encoded = btoa(token).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return ["jwt-auth", `jwt.${encoded}`];
}

/** 0.5 s, 1 s, 2 s ... up to 30 s, each with up to 50 % jitter (docs/WEBSOCKET.md, close codes). */
export function backoffMs(attempt, random = Math.random) {
  const base = Math.min(30_000, 500 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.5 + random() * 0.5));
}

export class Socket extends EventTarget {
  constructor(url, session) {
    super();
    this.url = url;
    this.session = session;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stopped = true;
    this.connections = 0;
    this.state = "offline";
    session.addEventListener("token", () => this.send({ type: "auth", token: session.accessToken }));
    window.addEventListener("online", () => { if (!this.stopped && !this.isOpen()) this.reconnectNow(); });
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.state === "connected";
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.clearPing();
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.setState("offline");
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.stopped || !this.session.accessToken) return;
    this.setState(this.connections ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url, subprotocols(this.session.accessToken));
    } catch (error) {
      this.retry(`cannot open the socket: ${error.message}`);
      return;
    }
    this.ws = ws;
    ws.addEventListener("message", (message) => this.onMessage(ws, message));
    ws.addEventListener("close", (event) => this.onClose(ws, event));
  }

  onMessage(ws, message) {
    if (ws !== this.ws) return;
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (frame.type === "connection_established") {
      this.attempt = 0;
      this.connections += 1;
      this.setState("connected", { resumed: this.connections > 1 });
      this.startPing((frame.heartbeat_interval || 25) * 1000);
      this.dispatchEvent(new CustomEvent("open", { detail: { resumed: this.connections > 1 } }));
      return;
    }
    if (frame.type === "pong") {
      clearTimeout(this.pongTimer);
      return;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  async onClose(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.clearPing();
    if (this.stopped) return;
    if (event.code === TOKEN_EXPIRED || event.code === POLICY) {
      // An expired or refused token: a fresh one fixes it; if the refresh fails the session is over.
      try {
        await this.session.refresh();
      } catch {
        this.setState("offline", { reason: "signed out" });
        return;
      }
      if (event.code === POLICY && this.attempt > 2) {
        this.setState("offline", { reason: event.reason || "refused" });
        return;
      }
    }
    if (event.code === RESTART) {
      // The instance is going away: another one takes the reconnection at once.
      this.attempt += 1;
      this.schedule(Math.round(Math.random() * 250), event.reason || "server restarting");
      return;
    }
    this.retry(event.reason || `connection closed (${event.code})`);
  }

  retry(reason) {
    this.attempt += 1;
    this.schedule(backoffMs(this.attempt), reason);
  }

  schedule(delayMs, reason) {
    clearTimeout(this.retryTimer);
    this.setState("waiting", { attempt: this.attempt, delayMs, reason });
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
  }

  reconnectNow() {
    this.attempt = 0;
    this.connect();
  }

  startPing(intervalMs) {
    this.clearPing();
    // Browsers answer protocol pings but never tell the page; an application ping finds a dead connection
    // (a laptop that slept, a proxy that dropped it) from this side too.
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => { if (this.ws) this.ws.close(4000, "no pong"); }, PONG_TIMEOUT_MS);
    }, intervalMs);
  }

  clearPing() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  /** Sends a frame if connected; false otherwise (the caller falls back to REST or waits for "open"). */
  send(frame) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
