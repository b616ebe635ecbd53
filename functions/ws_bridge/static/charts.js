// Two charts, as inline SVG inside ordinary HTML: the cost breakdown (one stacked bar with a legend) and the
// savings per recommendation (one bar per recommendation). Labels and values are HTML text next to the bars,
// so they stay readable at any width and in either colour scheme; the bars are sized in percent.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = 6; // colours --c0..--c5 in app.css, chosen for contrast in light and dark mode

export function money(value) {
  const amount = Number(value) || 0;
  return amount.toLocaleString("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 2 });
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function figure(kind, title, summary) {
  const node = document.createElement("figure");
  node.className = `chart chart-${kind}`;
  node.dataset.chart = kind;
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  node.append(caption);
  node.setAttribute("aria-label", `${title}. ${summary}`);
  return node;
}

/** Cost by model (or any key): rows [{key, cost_usd, share_pct?}] from the cost_breakdown tool. */
export function costBreakdown(rows, { title = "Cost by model", period = "" } = {}) {
  const priced = rows.filter((r) => Number(r.cost_usd) > 0);
  const total = priced.reduce((sum, r) => sum + Number(r.cost_usd), 0);
  if (!priced.length || total <= 0) return null;
  const summary = priced.map((r) => `${r.key}: ${money(r.cost_usd)}`).join("; ");
  const node = figure("cost", period ? `${title} (${period})` : title, summary);
  const bar = svg("svg", { class: "stack", width: "100%", height: "28", role: "presentation", "aria-hidden": "true",
                           preserveAspectRatio: "none" });
  let offset = 0;
  priced.forEach((row, index) => {
    const share = (Number(row.cost_usd) / total) * 100;
    const rect = svg("rect", { x: `${offset}%`, y: 0, width: `${share}%`, height: 28, class: `c${index % PALETTE}` });
    const tip = svg("title");
    tip.textContent = `${row.key}: ${money(row.cost_usd)}`;
    rect.append(tip);
    bar.append(rect);
    offset += share;
  });
  node.append(bar);
  const legend = document.createElement("ul");
  legend.className = "legend";
  priced.forEach((row, index) => {
    const item = document.createElement("li");
    item.dataset.key = row.key;
    const swatch = svg("svg", { width: 12, height: 12, "aria-hidden": "true" });
    swatch.append(svg("rect", { width: 12, height: 12, rx: 2, class: `c${index % PALETTE}` }));
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = row.key;
    const value = document.createElement("span");
    value.className = "value";
    const share = row.share_pct ?? (Number(row.cost_usd) / total) * 100;
    value.textContent = `${money(row.cost_usd)} · ${Number(share).toFixed(1)}%`;
    item.append(swatch, label, value);
    legend.append(item);
  });
  node.append(legend);
  return node;
}

/** Monthly savings per recommendation, each on its own: [{title, monthly_savings_usd, effort?, risk?}] from
 * rank_recommendations. They do not add up (changes to the same traffic share savings): the report's plan gives
 * the total. */
export function savings(recommendations, { title = "Monthly savings per recommendation, each on its own" } = {}) {
  const recs = recommendations.filter((r) => Number(r.monthly_savings_usd) > 0);
  if (!recs.length) return null;
  const largest = Math.max(...recs.map((r) => Number(r.monthly_savings_usd)));
  const summary = recs.map((r) => `${r.title}: ${money(r.monthly_savings_usd)} per month`).join("; ");
  const node = figure("savings", title, summary);
  const list = document.createElement("ol");
  list.className = "bars";
  recs.forEach((rec) => {
    const item = document.createElement("li");
    item.dataset.value = String(rec.monthly_savings_usd);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = rec.title;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${money(rec.monthly_savings_usd)}/mo`;
    const bar = svg("svg", { class: "bar", width: "100%", height: "14", "aria-hidden": "true",
                             preserveAspectRatio: "none" });
    const width = Math.max(0.5, (Number(rec.monthly_savings_usd) / largest) * 100);
    bar.append(svg("rect", { width: `${width}%`, height: 14, rx: 3, class: "c0" }));
    item.append(label, value, bar);
    list.append(item);
  });
  node.append(list);
  return node;
}
