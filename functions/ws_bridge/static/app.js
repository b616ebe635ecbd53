// The chat page: sign-in, threads, usage data, messages, live runs. See docs/WEB.md.

import { Api, ApiError, Session, discover } from "./api.js";
import { clear, h, show } from "./dom.js";
import { RunView } from "./runs.js";
import { Socket } from "./socket.js";

const $ = (id) => document.getElementById(id);
const CHUNK_BYTES = 900 * 1024; // under the API's 1 MiB body limit, with room for a CSV header per part

const state = {
  session: null,
  api: null,
  socket: null,
  threadId: null,
  runs: new Map(), // run_id -> RunView, for the open thread
  pendingChats: new Map(), // client_message_id -> {content, threadId}
  stats: { duplicates: 0, gaps: 0, resubscribes: 0 },
};
window.netra = state; // for the browser tests and for poking around in the console

function announce(text) {
  const node = $("announcer");
  node.textContent = "";
  // A new text node in a polite live region is read once the reader is idle.
  setTimeout(() => { node.textContent = text; }, 50);
}

// Plan limits (docs/AUTH.md, Plans): the server's message is the whole sentence for the reader ("you have used
// your plan's 20 runs this minute; try again in 12 s"); the code would only add noise.
const PLAN_LIMITS = new Set(["runs_per_minute_limit", "concurrent_runs_limit", "monthly_spend_cap", "usage_rows_limit"]);

function describe(error) {
  if (!(error instanceof ApiError)) return String(error.message || error);
  return PLAN_LIMITS.has(error.code) ? error.message : `${error.message} (${error.code})`;
}

function showError(id, error) {
  const node = $(id);
  node.textContent = error ? describe(error) : "";
  node.dataset.code = (error && error.code) || "";
  show(node, Boolean(error));
}

// -- connection state -------------------------------------------------------------------------------------------
const STATE_TEXT = {
  offline: () => "Not connected",
  connecting: () => "Connecting…",
  reconnecting: (d) => `Reconnecting (attempt ${d.attempt})…`,
  waiting: (d) => `Connection lost; retrying in ${(d.delayMs / 1000).toFixed(1)} s`,
  connected: (d) => (d.resumed ? "Connected (resumed)" : "Connected"),
};

function onSocketState(detail) {
  const node = $("connection");
  node.dataset.state = detail.state === "reconnecting" || detail.state === "connecting" ? "connecting" : detail.state;
  $("connection-text").textContent = STATE_TEXT[detail.state](detail);
  node.title = detail.reason || "";
}

// -- sign-in ---------------------------------------------------------------------------------------------------
function renderSignIn(config) {
  const providers = $("providers");
  clear(providers);
  for (const provider of config.providers || []) {
    const label = provider.name === "github" ? "GitHub" : provider.name[0].toUpperCase() + provider.name.slice(1);
    providers.append(h("button", {
      type: "button", class: `provider provider-${provider.name}`, disabled: !provider.available,
      title: provider.available ? "" : `${label} sign-in is unavailable right now`,
      onclick: () => state.session.startProvider(provider.name).catch((e) => showError("signin-error", e)),
    }, `Sign in with ${label}`));
  }
  show($("dev-login"), Boolean(config.dev_login));
  if (!config.dev_login && !(config.providers || []).length) {
    showError("signin-error", new Error("No sign-in method is configured on this server."));
  }
}

function signedOut(reason) {
  if (state.socket) state.socket.stop();
  state.runs.clear();
  state.threadId = null;
  show($("signed-in"), false);
  show($("account"), false);
  show($("signed-out"), true);
  if (reason) showError("signin-error", new Error(reason));
}

async function signedIn() {
  showError("signin-error", null);
  show($("signed-out"), false);
  show($("signed-in"), true);
  show($("account"), true);
  if (!state.session.user) state.session.user = await state.session.me();
  $("account-email").textContent = state.session.user.email || "";
  // On a phone the conversation comes first; the data panel opens with a tap.
  if (window.matchMedia("(max-width: 760px)").matches) $("data-panel").open = false;
  state.socket.start();
  await Promise.all([loadThreads(), loadUsage(), loadIngest().catch(() => {})]);
  // Live ingestion moves the counts without any action on this page: refresh them while the panel is open.
  if (!state.ingestTimer) {
    state.ingestTimer = setInterval(() => {
      if ($("data-panel").open && !document.hidden && state.session.accessToken) loadIngest().catch(() => {});
    }, 30_000);
  }
  $("composer-input").focus();
}

// -- threads ---------------------------------------------------------------------------------------------------
async function loadThreads() {
  const list = $("threads");
  const page = await state.api.threads();
  clear(list);
  for (const thread of page.items) {
    const current = thread.id === state.threadId;
    list.append(h("li", {}, h("button", {
      type: "button", class: "thread", "aria-current": current ? "true" : undefined, dataset: { threadId: thread.id },
      onclick: () => openThread(thread.id, thread.title),
    }, thread.title || "Untitled")));
  }
  if (!page.items.length) list.append(h("li", { class: "muted" }, "No conversations yet."));
  const open = page.items.find((thread) => thread.id === state.threadId);
  if (open) $("chat-title").textContent = open.title || "Untitled";
}

function resetMessages(title) {
  state.runs.clear();
  const messages = $("messages");
  clear(messages);
  $("chat-title").textContent = title || "New conversation";
}

async function openThread(threadId, title) {
  if (state.socket && state.threadId && state.threadId !== threadId) {
    state.socket.send({ type: "unsubscribe", thread_id: state.threadId });
  }
  state.threadId = threadId;
  resetMessages(title);
  const page = await state.api.messages(threadId);
  const answered = new Set(page.items.filter((m) => m.role === "assistant").map((m) => m.run_id));
  for (const message of page.items) {
    if (message.role === "user") {
      addUserMessage(message.content);
      if (message.run_id && !answered.has(message.run_id)) {
        // Still running: followed from its first event by subscribeThread below. Finished without an answer:
        // say how it ended.
        const view = runView(message.run_id, threadId);
        const run = await state.api.run(message.run_id).catch(() => null);
        if (run && !["queued", "running"].includes(run.status)) {
          view.finish({ type: run.status === "cancelled" ? "run_cancelled" : "agent_error",
                        data: { message: (run.error && run.error.message) || `The run ${run.status}.` } });
        }
      }
    } else {
      const view = RunView.fromMessage(message, announce);
      state.runs.set(view.runId, view);
      $("messages").append(view.el);
    }
  }
  subscribeThread();
  await loadThreads();
}

function newThread() {
  if (state.threadId) state.socket.send({ type: "unsubscribe", thread_id: state.threadId });
  state.threadId = null;
  resetMessages();
  $("messages").append(h("p", { class: "muted", id: "empty-hint" }, "Ask about your LLM spend."));
  loadThreads().catch(() => {});
  $("composer-input").focus();
}

// -- runs and events -------------------------------------------------------------------------------------------
function runView(runId, threadId) {
  let view = state.runs.get(runId);
  if (!view) {
    view = new RunView(runId, threadId, announce);
    state.runs.set(runId, view);
    $("messages").append(view.el);
    const hint = $("empty-hint");
    if (hint) hint.remove();
  }
  return view;
}

function activeRun() {
  let latest = null;
  for (const view of state.runs.values()) if (!view.done) latest = view;
  return latest;
}

/** (Re)subscribes to the open thread: the unfinished run from the last seq shown, else live events only. */
function subscribeThread() {
  if (!state.threadId) return;
  const run = activeRun();
  const frame = { type: "subscribe", thread_id: state.threadId };
  if (run) Object.assign(frame, { run_id: run.runId, after_seq: run.lastSeq });
  if (run) run.resyncing = true;
  state.stats.resubscribes += 1;
  state.socket.send(frame);
}

function onEvent(event) {
  if (event.thread_id !== state.threadId) return;
  const view = runView(event.run_id, event.thread_id);
  const outcome = view.apply(event);
  if (outcome === "duplicate") {
    state.stats.duplicates += 1;
  } else if (outcome === "gap" && !view.resyncing) {
    // A missing seq: ask for the run again from the last one shown; the replay brings it in order.
    state.stats.gaps += 1;
    view.resyncing = true;
    state.socket.send({ type: "subscribe", thread_id: view.threadId, run_id: view.runId, after_seq: view.lastSeq });
  }
  if (event.type === "agent_completed") {
    loadUsage().catch(() => {});
    loadThreads().catch(() => {});
  }
}

async function catchUpByRest() {
  // The bridge could not read the event log: the agent API serves the same log.
  for (const view of state.runs.values()) {
    if (view.done) continue;
    const page = await state.api.events(view.runId, view.lastSeq);
    for (const event of page.events) onEvent(event);
  }
}

// A refused replay also ends the bridge's subscription: what the run does next only arrives once the thread is
// subscribed again. Backoff from 0.5 s to 8 s while the bridge keeps refusing; a `subscribed` ends it.
let resubscribeDelayMs = 0;

function afterRefusedReplay() {
  catchUpByRest()
    .catch((error) => showError("chat-error", error))
    .finally(() => {
      resubscribeDelayMs = Math.min(resubscribeDelayMs ? resubscribeDelayMs * 2 : 500, 8000);
      setTimeout(subscribeThread, resubscribeDelayMs);
    });
}

function onFrame(frame) {
  switch (frame.type) {
    case "subscribed":
      resubscribeDelayMs = 0;
      for (const view of state.runs.values()) if (view.threadId === frame.thread_id) view.resyncing = false;
      break;
    case "chat_accepted":
      chatAccepted(frame);
      break;
    case "auth_ok":
      document.body.dataset.tokenRefreshes = String(state.session.refreshes);
      break;
    case "error":
      onErrorFrame(frame);
      break;
    default:
      if ("seq" in frame && "run_id" in frame) onEvent(frame);
  }
}

// Errors of other frames than `chat` (subscribe, auth, the connection itself): never a pending chat's failure.
const NOT_CHAT_ERRORS = new Set(["thread_not_found", "unavailable", "replay_unavailable", "too_many_connections",
                                 "invalid_token", "auth_unavailable", "invalid_json", "unknown_frame"]);
const RETRY_BY_REST = new Set(["agent_unavailable", "rate_limited", "too_many_pending", "internal", "chat_requires_token"]);

function onErrorFrame(frame) {
  if (frame.code === "replay_unavailable" || frame.code === "unavailable") {
    afterRefusedReplay();
    return;
  }
  if (!NOT_CHAT_ERRORS.has(frame.code) && state.pendingChats.size) {
    // Errors answering a chat name it; otherwise (a refused frame) the oldest pending chat is the one that failed.
    const named = frame.client_message_id && state.pendingChats.get(frame.client_message_id);
    const [id, chat] = named ? [frame.client_message_id, named] : state.pendingChats.entries().next().value;
    state.pendingChats.delete(id);
    if (RETRY_BY_REST.has(frame.code)) {
      postByRest(chat.content, chat.threadId, id); // idempotent by client_message_id
      return;
    }
    setBusy(false);
  }
  showError("chat-error", new ApiError(0, frame.code, frame.message));
}

// -- sending ---------------------------------------------------------------------------------------------------
function addUserMessage(content) {
  const hint = $("empty-hint");
  if (hint) hint.remove();
  const node = h("div", { class: "message user" }, h("p", { class: "who sr-only" }, "You said:"), h("p", {}, content));
  $("messages").append(node);
  node.scrollIntoView({ block: "nearest" });
}

function chatAccepted(accepted) {
  state.pendingChats.delete(accepted.client_message_id);
  const isNew = state.threadId !== accepted.thread_id;
  state.threadId = accepted.thread_id;
  const view = runView(accepted.run_id, accepted.thread_id);
  if (accepted.replayed && !view.done) {
    // A chat sent again after a lost connection: its run may be under way or over; replay it from the start.
    view.resyncing = true;
    state.socket.send({ type: "subscribe", thread_id: view.threadId, run_id: view.runId, after_seq: view.lastSeq });
  }
  if (isNew) loadThreads().catch(() => {});
  setBusy(false);
}

/** After a reconnection: chats whose acceptance never arrived are sent again (idempotent by client_message_id). */
function resendPendingChats() {
  for (const [id, chat] of state.pendingChats) {
    state.socket.send({ type: "chat", content: chat.content, client_message_id: id,
                        ...(chat.threadId ? { thread_id: chat.threadId } : {}) });
  }
}

async function postByRest(content, threadId, clientMessageId) {
  try {
    const accepted = await state.api.post(content, threadId, clientMessageId);
    chatAccepted({ ...accepted, client_message_id: clientMessageId });
    subscribeThread(); // a REST post is not followed by the bridge by itself
  } catch (error) {
    showError("chat-error", error);
    setBusy(false);
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("generate").disabled = busy;
}

function send(content) {
  const text = content.trim();
  if (!text) return;
  showError("chat-error", null);
  const id = crypto.randomUUID();
  addUserMessage(text);
  setBusy(true);
  const frame = { type: "chat", content: text, client_message_id: id, ...(state.threadId ? { thread_id: state.threadId } : {}) };
  if (state.socket.send(frame)) {
    state.pendingChats.set(id, { content: text, threadId: state.threadId });
  } else {
    postByRest(text, state.threadId, id);
  }
}

// -- usage data ------------------------------------------------------------------------------------------------
async function loadUsage() {
  const summary = await state.api.usageSummary();
  const node = $("usage-summary");
  if (!summary.records) {
    node.textContent = "No usage records yet.";
    return;
  }
  const first = (summary.first_ts || "").slice(0, 10);
  const last = (summary.last_ts || "").slice(0, 10);
  const models = summary.models.slice(0, 4).map((m) => m.model).join(", ");
  node.textContent = `${summary.records.toLocaleString("en-US")} records, ${first} to ${last}; models: ${models}.`;
  loadIngest().catch(() => {});
}

function contentType(name) {
  if (/\.csv$/i.test(name)) return "text/csv";
  if (/\.json$/i.test(name)) return "application/json";
  return "application/x-ndjson";
}

/** JSONL and CSV files above the body limit go as parts at line boundaries (CSV parts repeat the header). */
function parts(text, type) {
  if (new Blob([text]).size <= CHUNK_BYTES || type === "application/json") return [{ body: text, firstRow: 1 }];
  const lines = text.split("\n");
  const header = type === "text/csv" ? lines.shift() : null;
  const out = [];
  let current = [];
  let size = 0;
  let firstRow = 1;
  let row = 1;
  for (const line of lines) {
    if (!line.trim()) continue;
    const bytes = new Blob([line]).size + 1;
    if (current.length && size + bytes > CHUNK_BYTES) {
      out.push({ body: (header ? [header, ...current] : current).join("\n"), firstRow });
      current = [];
      size = 0;
      firstRow = row;
    }
    current.push(line);
    size += bytes;
    row += 1;
  }
  if (current.length) out.push({ body: (header ? [header, ...current] : current).join("\n"), firstRow });
  return out;
}

async function upload(file) {
  const status = $("upload-status");
  const type = contentType(file.name);
  const chunks = parts(await file.text(), type);
  let inserted = 0;
  let duplicate = 0;
  try {
    for (const [index, chunk] of chunks.entries()) {
      status.textContent = chunks.length > 1 ? `Uploading part ${index + 1} of ${chunks.length}…` : "Uploading…";
      const result = await state.api.upload(chunk.body, type, chunks.length > 1 ? index + 1 : null, chunk.firstRow);
      inserted += result.rows_inserted || 0;
      duplicate += result.rows_duplicate || 0;
    }
    status.textContent = `Uploaded ${file.name}: ${inserted.toLocaleString("en-US")} new rows`
      + (duplicate ? `, ${duplicate.toLocaleString("en-US")} already there.` : ".");
    status.dataset.rowsInserted = String(inserted);
  } catch (error) {
    const first = error.details && error.details.errors && error.details.errors[0];
    const where = first ? ` First problem: row ${first.row}${first.field ? `, ${first.field}` : ""}: ${first.reason}.` : "";
    status.textContent = `Upload failed: ${error.message}.${where}`;
    status.dataset.rowsInserted = "0";
  }
  await loadUsage().catch(() => {});
}

// -- live ingestion (docs/INGESTION.md) ------------------------------------------------------------------------
const SOURCE_NAMES = { otlp: "OpenTelemetry", litellm: "LiteLLM", upload: "uploads" };

function when(iso) {
  return iso ? `${iso.slice(0, 16).replace("T", " ")} UTC` : "never";
}

async function loadIngest() {
  const status = await state.api.ingestStatus();
  const counts = status.sources
    .filter((s) => s.records || s.source !== "upload")
    .map((s) => `${SOURCE_NAMES[s.source] || s.source}: ${s.records.toLocaleString("en-US")} records`
      + (s.ignored ? ` (${s.ignored.toLocaleString("en-US")} other span${s.ignored === 1 ? "" : "s"} ignored)` : ""));
  const node = $("ingest-sources");
  node.textContent = status.last_ingested_at
    ? `Last record ingested ${when(status.last_ingested_at)}. ${counts.join("; ")}.`
    : `Nothing ingested yet. ${counts.join("; ")}.`;
  node.dataset.lastIngestedAt = status.last_ingested_at || "";
  const list = $("ingest-keys");
  clear(list);
  for (const key of status.keys) {
    const label = `${key.name} (${key.prefix}…), last used ${when(key.last_used_at)}`;
    list.append(h("li", { dataset: { keyId: key.id, active: String(key.active) } },
      h("span", {}, key.active ? label : `${label}, revoked ${when(key.revoked_at)}`),
      key.active ? h("button", { type: "button", "aria-label": `Revoke ${key.name}`, onclick: () => revokeKey(key) },
        "Revoke") : null));
  }
}

async function createKey(name) {
  showError("ingest-error", null);
  try {
    const created = await state.api.createIngestKey(name);
    $("ingest-new-key").textContent = created.key;
    $("ingest-otlp-url").textContent = `${state.api.apiUrl}/v1/traces`;
    $("ingest-litellm-url").textContent = `${state.api.apiUrl}/v1/litellm`;
    show($("ingest-new"), true);
    $("ingest-name").value = "";
  } catch (error) {
    showError("ingest-error", error);
  }
  await loadIngest().catch(() => {});
}

async function revokeKey(key) {
  showError("ingest-error", null);
  try {
    await state.api.revokeIngestKey(key.id);
    show($("ingest-new"), false);
    announce(`Key ${key.name} revoked.`);
  } catch (error) {
    showError("ingest-error", error);
  }
  await loadIngest().catch(() => {});
}

// -- start -----------------------------------------------------------------------------------------------------
function wire() {
  $("dev-login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.session.devLogin($("dev-email").value).then(signedIn).catch((error) => showError("signin-error", error));
  });
  $("sign-out").addEventListener("click", () => state.session.logout());
  $("new-thread").addEventListener("click", newThread);
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("composer-input");
    send(input.value);
    input.value = "";
  });
  $("composer-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("usage-file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) upload(file).finally(() => { event.target.value = ""; });
  });
  $("generate").addEventListener("click", () => send(`/generate ${$("sample-profile").value}`));
  $("ingest-create").addEventListener("submit", (event) => {
    event.preventDefault();
    createKey($("ingest-name").value.trim());
  });
  $("data-panel").addEventListener("toggle", () => {
    if ($("data-panel").open) loadIngest().catch(() => {});
  });
}

async function boot() {
  wire();
  const urls = await discover();
  state.session = new Session(urls.authUrl);
  state.api = new Api(urls.apiUrl, state.session);
  state.socket = new Socket(urls.wsUrl, state.session);
  state.socket.addEventListener("state", (e) => onSocketState(e.detail));
  state.socket.addEventListener("frame", (e) => onFrame(e.detail));
  state.socket.addEventListener("open", () => {
    subscribeThread();
    resendPendingChats();
  });
  state.session.addEventListener("signedout", (e) => signedOut(e.detail));
  const config = await state.session.loadConfig();
  renderSignIn(config);

  const params = new URLSearchParams(window.location.search);
  if (params.has("code") || params.has("error")) {
    window.history.replaceState(null, "", window.location.pathname); // the one-time code leaves the URL at once
    if (params.has("error")) {
      signedOut(`Sign-in did not complete (${params.get("error")}).`);
      return;
    }
    try {
      await state.session.exchangeCode(params.get("code"));
      await signedIn();
    } catch (error) {
      signedOut(`Sign-in failed: ${error.message}`);
    }
    return;
  }
  try {
    if (await state.session.resume()) {
      await signedIn();
      return;
    }
  } catch {
    // an expired refresh token: sign in again
  }
  signedOut("");
}

boot().then(() => { document.body.dataset.ready = "true"; }).catch((error) => {
  document.body.dataset.ready = "error";
  signedOut(`The page could not start: ${error.message}`);
});
