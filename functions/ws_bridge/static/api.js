// Where the services are, who is signed in, and the agent API's REST calls.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/**
 * The service URLs. Served by ws_bridge (locally), `config.json` next to the page names auth and the agent API
 * and the socket is this origin's `/ws`. Served elsewhere (staging: the static bucket behind app.<domain>),
 * the hosts follow the platform's naming: auth.<domain>, api.<domain>, ws.<domain>.
 */
export async function discover(location = window.location) {
  const wsScheme = location.protocol === "https:" ? "wss:" : "ws:";
  try {
    const response = await fetch(new URL("config.json", location.href), { cache: "no-store" });
    if (response.ok && (response.headers.get("content-type") || "").includes("json")) {
      const body = await response.json();
      if (body.auth_url && body.api_url) {
        return { authUrl: body.auth_url.replace(/\/$/, ""), apiUrl: body.api_url.replace(/\/$/, ""),
                 wsUrl: body.ws_url || `${wsScheme}//${location.host}/ws` };
      }
    }
  } catch {
    // No config.json here: derive from the host name below.
  }
  const host = location.hostname;
  if (!host.startsWith("app.")) throw new Error(`cannot find the services from ${location.host}: no config.json`);
  const suffix = host.slice("app.".length);
  return { authUrl: `${location.protocol}//auth.${suffix}`, apiUrl: `${location.protocol}//api.${suffix}`,
           wsUrl: `${wsScheme}//ws.${suffix}/ws` };
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
                       error.message || `${response.status} ${response.statusText}`, error.details);
  }
  return body;
}

const REFRESH_KEY = "netra.refresh_token";
const VERIFIER_KEY = "netra.pkce_verifier";

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * The signed-in session: the access token lives in memory only; the refresh token in sessionStorage (this tab
 * only, gone when it closes) so a reload stays signed in. The access token is refreshed before it expires, and
 * every refresh is announced (the socket sends it as an `auth` frame).
 */
export class Session extends EventTarget {
  constructor(authUrl) {
    super();
    this.authUrl = authUrl;
    this.config = null;
    this.accessToken = null;
    this.expiresAt = 0;
    this.user = null;
    this.refreshes = 0;
    this.timer = null;
    this.pending = null;
  }

  async loadConfig() {
    this.config = await parse(await fetch(`${this.authUrl}/auth/config`, { cache: "no-store" }));
    return this.config;
  }

  async post(path, body) {
    return parse(await fetch(`${this.authUrl}${path}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }));
  }

  adopt(pair) {
    this.accessToken = pair.access_token;
    this.expiresAt = Date.now() + pair.expires_in * 1000;
    if (pair.user) this.user = pair.user;
    sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
    this.schedule(pair.expires_in);
    this.dispatchEvent(new CustomEvent("token", { detail: this.accessToken }));
  }

  schedule(expiresIn) {
    clearTimeout(this.timer);
    // A minute before expiry; at 80 % of a lifetime of two minutes or less.
    const delay = Math.max(5, expiresIn > 120 ? expiresIn - 60 : expiresIn * 0.8);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), delay * 1000);
  }

  async devLogin(email) {
    this.adopt(await this.post("/auth/dev/login", { email }));
  }

  /** Starts a provider sign-in: auth redirects back here with ?code=, exchanged with the PKCE verifier. */
  async startProvider(provider) {
    const verifier = base64url(crypto.getRandomValues(new Uint8Array(48)));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    sessionStorage.setItem(VERIFIER_KEY, verifier);
    const returnTo = `${window.location.origin}${window.location.pathname}`;
    const params = new URLSearchParams({ provider, return_to: returnTo, code_challenge: base64url(digest),
                                         code_challenge_method: "S256" });
    window.location.assign(`${this.authUrl}/auth/login?${params}`);
  }

  async exchangeCode(code) {
    const verifier = sessionStorage.getItem(VERIFIER_KEY);
    sessionStorage.removeItem(VERIFIER_KEY);
    this.adopt(await this.post("/auth/token", verifier ? { code, code_verifier: verifier } : { code }));
  }

  /** One refresh at a time: a 401 and the timer racing must not present the same refresh token twice. */
  refresh() {
    if (!this.pending) {
      const token = sessionStorage.getItem(REFRESH_KEY);
      if (!token) return Promise.reject(new ApiError(401, "signed_out", "not signed in"));
      this.pending = this.post("/auth/refresh", { refresh_token: token })
        .then((pair) => {
          this.refreshes += 1;
          this.adopt(pair);
        })
        .catch((error) => {
          if (error instanceof ApiError && error.status === 401) this.clear("Your session ended; sign in again.");
          else this.schedule(12.5); // auth unreachable for now: try again in 10 s (80 % of 12.5)
          throw error;
        })
        .finally(() => {
          this.pending = null;
        });
    }
    return this.pending;
  }

  async resume() {
    if (!sessionStorage.getItem(REFRESH_KEY)) return false;
    await this.refresh();
    return true;
  }

  async me() {
    return parse(await fetch(`${this.authUrl}/auth/me`, { headers: { Authorization: `Bearer ${this.accessToken}` } }));
  }

  async logout() {
    const token = sessionStorage.getItem(REFRESH_KEY);
    if (token) await this.post("/auth/logout", { refresh_token: token }).catch(() => {});
    this.clear("");
  }

  clear(reason) {
    clearTimeout(this.timer);
    this.accessToken = null;
    this.user = null;
    sessionStorage.removeItem(REFRESH_KEY);
    this.dispatchEvent(new CustomEvent("signedout", { detail: reason }));
  }
}

/** The agent API with the session's token; a 401 refreshes the token once and retries. */
export class Api {
  constructor(apiUrl, session) {
    this.apiUrl = apiUrl;
    this.session = session;
  }

  async request(method, path, { json, body, contentType, retry = true } = {}) {
    const headers = { Authorization: `Bearer ${this.session.accessToken}` };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (contentType) {
      headers["Content-Type"] = contentType;
    }
    const response = await fetch(`${this.apiUrl}${path}`, { method, headers, body });
    if (response.status === 401 && retry) {
      await this.session.refresh();
      return this.request(method, path, { json, body, contentType, retry: false });
    }
    return parse(response);
  }

  threads() { return this.request("GET", "/api/threads?limit=50"); }
  /** The whole conversation, oldest first: the API pages forward only, so long threads take several calls. */
  async messages(threadId, maxPages = 20) {
    const items = [];
    let cursor = null;
    for (let page = 0; page < maxPages; page += 1) {
      const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const body = await this.request("GET", `/api/threads/${threadId}/messages?limit=100${query}`);
      items.push(...body.items);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return { items, next_cursor: cursor };
  }
  run(runId) { return this.request("GET", `/api/runs/${runId}`); }
  events(runId, afterSeq) { return this.request("GET", `/api/runs/${runId}/events?after_seq=${afterSeq}`); }
  post(content, threadId, clientMessageId) {
    return this.request("POST", "/api/agent/message",
                        { json: { content, client_message_id: clientMessageId, ...(threadId ? { thread_id: threadId } : {}) } });
  }
  usageSummary() { return this.request("GET", "/api/usage/summary"); }
  ingestStatus() { return this.request("GET", "/api/ingest/status"); }
  createIngestKey(name) { return this.request("POST", "/api/ingest/keys", { json: { name } }); }
  revokeIngestKey(id) { return this.request("DELETE", `/api/ingest/keys/${encodeURIComponent(id)}`); }
  upload(body, contentType, part, firstRow) {
    const query = part ? `?part=${part}&first_row=${firstRow}` : "";
    return this.request("POST", `/api/usage${query}`, { body, contentType });
  }
}
