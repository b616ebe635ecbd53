// One agent run on the page: its steps as they arrive (in seq order, each once), the streamed answer, the
// final report with its charts.

import { costBreakdown, money, savings } from "./charts.js";
import { h } from "./dom.js";
import { render } from "./markdown.js";

const TERMINAL = new Set(["agent_completed", "agent_error", "run_cancelled"]);
const MAX_RESULT_CHARS = 4000;

function compact(value, limit = 140) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function describe(event, args) {
  const data = event.data || {};
  switch (event.type) {
    case "agent_started":
      return data.step && data.step !== event.agent_name ? `started: ${data.step}` : "started";
    case "agent_thinking":
      if (data.thought) return data.thought;
      if (data.llm_fallback) return `model fallback: ${compact(data.llm_fallback)}`;
      return "thinking";
    case "tool_executing": {
      const shown = args && Object.keys(args).length ? ` ${compact(args, 100)}` : "";
      return `calls ${data.tool}${shown}`;
    }
    case "tool_completed":
      if (data.ok === false) return `${data.tool} failed: ${data.error || "error"}`;
      return `${data.tool} returned${data.duration_ms !== undefined ? ` in ${data.duration_ms} ms` : ""}`;
    case "partial_result":
      return `streamed ${String(data.delta ?? data.text ?? "").length} characters of the answer`;
    case "agent_completed":
      return "finished";
    case "agent_error":
      return `failed: ${data.message || data.code || "error"}`;
    case "run_cancelled":
      return `cancelled${data.reason ? `: ${data.reason}` : ""}`;
    default:
      return event.type;
  }
}

export class RunView {
  constructor(runId, threadId, announce) {
    this.runId = runId;
    this.threadId = threadId;
    this.announce = announce;
    this.lastSeq = 0;
    this.done = false;
    this.resyncing = false;
    this.text = "";
    this.args = new Map();
    this.costRows = null;
    this.recommendations = null;
    this.frame = 0;
    this.count = h("span", { class: "count" }, "0");
    this.current = h("span", { class: "current" }, "queued");
    this.events = h("ol", { class: "events" });
    this.steps = h("details", { class: "steps", open: true },
      h("summary", {}, "Agent steps (", this.count, ") · ", this.current), this.events);
    // aria-busy holds announcements back while the answer streams; the finished answer is read once.
    this.answer = h("div", { class: "answer markdown", "aria-live": "polite", "aria-busy": "true" });
    this.charts = h("div", { class: "charts" });
    this.meta = h("p", { class: "run-meta muted" });
    this.el = h("article", { class: "run", "aria-label": "Assistant answer", dataset: { runId, status: "running" } },
      this.steps, this.charts, this.answer, this.meta); // the charts read first, the tables follow
  }

  /** "applied", "duplicate" (seq already shown) or "gap" (an earlier seq is missing: resubscribe first). */
  apply(event) {
    if (event.seq <= this.lastSeq) return "duplicate";
    if (event.seq > this.lastSeq + 1) return "gap";
    this.lastSeq = event.seq;
    this.row(event);
    const data = event.data || {};
    if (event.type === "agent_started") {
      this.current.textContent = `${event.agent_name}…`;
      this.announce(`${event.agent_name} started`);
    } else if (event.type === "tool_executing") {
      this.args.set(data.call_id, data.args || {});
    } else if (event.type === "tool_completed" && data.ok !== false) {
      this.keepResult(data.tool, this.args.get(data.call_id) || {}, data.result || {});
    } else if (event.type === "partial_result") {
      this.text += String(data.delta ?? data.text ?? "");
      this.scheduleRender();
    }
    if (TERMINAL.has(event.type)) this.finish(event);
    return "applied";
  }

  row(event) {
    const args = event.type === "tool_executing" ? (event.data || {}).args : undefined;
    const item = h("li", {
      class: `event event-${event.type}`,
      dataset: { seq: event.seq, type: event.type, agent: event.agent_name || "", run: event.runId || event.run_id },
    },
    h("span", { class: "seq", "aria-hidden": "true" }, String(event.seq)),
    h("span", { class: "agent" }, event.agent_name || "platform"),
    h("span", { class: "what" }, describe(event, args)));
    if (event.type === "tool_completed" && event.data && event.data.result !== undefined) {
      const text = JSON.stringify(event.data.result, null, 2);
      item.append(h("details", { class: "result" }, h("summary", {}, "result"),
        h("pre", { tabindex: "0" }, text.length > MAX_RESULT_CHARS ? `${text.slice(0, MAX_RESULT_CHARS)}\n…` : text)));
    }
    // Follow the newest step, unless the reader scrolled up to look at an earlier one.
    const list = this.events;
    const following = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(item);
    if (following) list.scrollTop = list.scrollHeight;
    this.count.textContent = String(this.events.childElementCount);
  }

  keepResult(tool, args, result) {
    if (tool === "cost_breakdown" && (args.by || result.by) === "model" && Array.isArray(result.rows)) {
      this.costRows = result.rows;
    } else if (tool === "rank_recommendations" && Array.isArray(result.recommendations)) {
      this.recommendations = result.recommendations;
    }
  }

  scheduleRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.renderAnswer();
    });
  }

  renderAnswer() {
    this.answer.replaceChildren(render(this.text));
  }

  finish(event) {
    const data = event.data || {};
    this.done = true;
    this.el.dataset.status = event.type === "agent_completed" ? "completed" : event.type === "agent_error" ? "failed" : "cancelled";
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (event.type === "agent_completed") {
      if (typeof data.content === "string" && data.content) this.text = data.content; // the stored answer is the truth
      this.renderAnswer();
      const report = (data.metadata && data.metadata.report) || {};
      this.drawCharts(this.costRows, this.recommendations || report.recommendations || null);
      const parts = [];
      if (data.duration_ms !== undefined && data.duration_ms !== null) parts.push(`${(data.duration_ms / 1000).toFixed(1)} s`);
      if (data.cost_usd !== undefined && data.cost_usd !== null) parts.push(`run cost ${money(data.cost_usd)}`);
      this.meta.textContent = parts.join(" · ");
      this.current.textContent = "done";
      this.steps.open = false;
      this.announce("The answer is ready.");
    } else {
      this.renderAnswer();
      const message = event.type === "agent_error" ? data.message || "The run failed." : "The run was cancelled.";
      this.answer.append(h("p", { class: "error", role: "alert" }, message));
      this.current.textContent = event.type === "agent_error" ? "failed" : "cancelled";
    }
    this.answer.setAttribute("aria-busy", "false");
  }

  drawCharts(costRows, recommendations) {
    this.charts.replaceChildren();
    const cost = costRows ? costBreakdown(costRows, { title: "Cost by model" }) : null;
    const saved = recommendations ? savings(recommendations) : null;
    if (cost) this.charts.append(cost);
    if (saved) this.charts.append(saved);
  }

  /** A finished answer from the thread's history (no events to show). */
  static fromMessage(message, announce) {
    const view = new RunView(message.run_id || message.id, message.thread_id, announce);
    view.done = true;
    view.steps.hidden = true;
    view.text = message.content;
    view.renderAnswer();
    view.answer.setAttribute("aria-busy", "false");
    view.el.dataset.status = "completed";
    const report = (message.metadata && message.metadata.report) || {};
    view.drawCharts(null, report.recommendations || null);
    return view;
  }
}
