"""The explore page's HTML: one file holding its data (JSON), its style and its script, nothing fetched.

The script draws the sweep's table at load (click a heading to sort, type in the filter to keep rows
holding every word typed), and a job's metrics and feature cards when its row is clicked (or named in
the address: `explore.html#job=3`). Text from the data is only ever set as text, never as markup.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
th { cursor: pointer; background: #f3f3f3; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; } th[aria-sort=descending]::after { content: " \\25BC"; }
tr.job { cursor: pointer; } tr.job:hover { background: #eef4ff; } tr.job.open { background: #dde8ff; }
#filter { width: 30em; padding: 4px; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: .6em .8em; margin: .6em 0; max-width: 70em; }
.card h3 { margin: 0 0 .3em 0; font-size: 15px; }
.context { font-family: ui-monospace, monospace; white-space: pre-wrap; margin: 2px 0; }
.context .where { color: #777; font-family: system-ui, sans-serif; font-size: 12px; margin-right: .6em; }
.token { border-radius: 2px; } .token:empty { padding-left: 3px; } .token.peak { outline: 2px solid #c22; }
.note { color: #955; } .muted { color: #777; }
.versus { border-left: 4px solid #4a78c2; padding-left: .8em; margin: .8em 0; max-width: 70em; }
svg.histogram rect.c0 { fill: #4a78c2; } svg.histogram rect.c1 { fill: #d9772b; }
svg.histogram rect.c2 { fill: #4a9c5a; } svg.histogram rect.c3 { fill: #9a4ac2; } svg.histogram rect.c4 { fill: #777; }
"""

SCRIPT = r"""
const DATA = JSON.parse(document.getElementById("mosaic-data").textContent);
const COLORS = ["c0", "c1", "c2", "c3", "c4"];
let sortColumn = null, ascending = true;

function element(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== null) node.textContent = String(text);
  return node;
}

function shown(value) { return value === null || value === undefined ? "" : String(value); }

function drawTable() {
  const table = document.getElementById("jobs");
  table.replaceChildren();
  const head = element("tr");
  for (const column of DATA.columns) {
    const th = element("th", {"data-column": column}, column);
    if (column === sortColumn) th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    th.addEventListener("click", () => { ascending = column === sortColumn ? !ascending : true;
                                         sortColumn = column; drawTable(); });
    head.appendChild(th);
  }
  table.appendChild(head);
  const words = document.getElementById("filter").value.toLowerCase().split(/\s+/).filter(w => w);
  let order = DATA.rows.map((row, index) => index);
  if (sortColumn !== null) {
    order.sort((a, b) => {
      const x = DATA.rows[a][sortColumn], y = DATA.rows[b][sortColumn];
      if (x === y) return a - b;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      const less = typeof x === "number" && typeof y === "number" ? x < y
        : String(x).localeCompare(String(y), undefined, {numeric: true}) < 0;
      return (less ? -1 : 1) * (ascending ? 1 : -1);
    });
  }
  let count = 0;
  for (const index of order) {
    const row = DATA.rows[index];
    const text = DATA.columns.map(c => shown(row[c])).join(" ").toLowerCase();
    if (!words.every(word => text.includes(word))) continue;
    const tr = element("tr", {"class": "job", "data-job": index});
    for (const column of DATA.columns) tr.appendChild(element("td", {"data-column": column}, shown(row[column])));
    tr.addEventListener("click", () => openJob(index));
    table.appendChild(tr);
    count += 1;
  }
  document.getElementById("count").textContent = `${count} of ${DATA.rows.length} jobs`;
}

function histogram(profile) {
  const ns = "http://www.w3.org/2000/svg";
  const classes = Object.keys(profile.histogram.counts);
  const bins = profile.histogram.edges.length - 1, width = 220, height = 50;
  const barWidth = width / bins / classes.length;
  const most = Math.max(1, ...classes.flatMap(c => profile.histogram.counts[c]));
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "histogram"); svg.setAttribute("width", width); svg.setAttribute("height", height);
  classes.forEach((name, c) => profile.histogram.counts[name].forEach((count, bin) => {
    const rect = document.createElementNS(ns, "rect");
    const barHeight = count ? Math.max(1, height * Math.sqrt(count / most)) : 0;
    rect.setAttribute("class", COLORS[c % COLORS.length]);
    rect.setAttribute("x", bin * width / bins + c * barWidth); rect.setAttribute("width", barWidth - 1);
    rect.setAttribute("y", height - barHeight); rect.setAttribute("height", barHeight);
    const title = document.createElementNS(ns, "title");
    const [low, high] = [profile.histogram.edges[bin], profile.histogram.edges[bin + 1]];
    title.textContent = `${name}: ${count} documents peak in ${low}–${high}`;
    rect.appendChild(title); svg.appendChild(rect);
  }));
  return svg;
}

function card(spec) {
  const div = element("div", {"class": "card", "data-latent": spec.latent});
  const heading = element("h3", {}, `latent ${spec.latent}`);
  if (spec.class !== null) heading.appendChild(element("span", {"class": "muted"},
    ` · evidence ${spec.evidence} for ${spec.class}`));
  if (spec.asked) heading.appendChild(element("span", {"class": "muted"}, " · asked for"));
  div.appendChild(heading);
  if (spec.url && /^https?:\/\//.test(spec.url)) {
    div.appendChild(element("a", {"href": spec.url, "class": "neuronpedia"}, "Neuronpedia"));
  }
  if (spec.mean_by_class) div.appendChild(element("div", {"class": "muted"}, "mean on training documents: " +
    Object.entries(spec.mean_by_class).map(([k, v]) => `${k} ${v === null ? "n/a" : v.toFixed(4)}`).join(", ")));
  if (spec.note) div.appendChild(element("div", {"class": "note"}, spec.note));
  const profile = spec.profile === null ? null : DATA.profiles[spec.profile];
  if (!profile) return div;
  div.appendChild(element("div", {"class": "density"},
    `fires on ${(100 * profile.density).toFixed(2)}% of tokens; peak activation per document by class (` +
    Object.keys(profile.histogram.counts).join(", ") + "):"));
  div.appendChild(histogram(profile));
  if (!profile.contexts.length) {
    div.appendChild(element("div", {"class": "muted"}, "It never fires on these documents."));
  }
  const top = Math.max(...profile.contexts.flatMap(c => c.values), 1e-9);
  for (const context of profile.contexts) {
    const line = element("div", {"class": "context", "data-document": context.document});
    const where = `doc ${context.document} · ${context.split} · ${context.label}`;
    line.appendChild(element("span", {"class": "where"}, where));
    if (context.start > 0) line.appendChild(element("span", {"class": "muted"}, "…"));
    context.tokens.forEach((token, i) => {
      const position = context.start + i, value = context.values[i];
      const span = element("span", {"class": position === context.peak ? "token peak" : "token",
                                    "data-position": position, "title": value.toFixed(4)},
                          token.replace(/\n/g, "⏎"));
      if (value > 0) span.style.background = `rgba(255, 120, 0, ${(0.15 + 0.85 * value / top).toFixed(3)})`;
      line.appendChild(span);
    });
    if (context.start + context.tokens.length < context.length) {
      line.appendChild(element("span", {"class": "muted"}, "…"));
    }
    div.appendChild(line);
  }
  return div;
}

function versusView(versus) {
  const div = element("div", {"class": "versus"});
  div.appendChild(element("h3", {}, `Hidden state (job ${versus.hidden}) vs SAE (job ${versus.sae}) ` +
    `on the same ${versus.documents} test documents`));
  const table = element("table", {"class": "versus-counts"});
  for (const [name, count] of Object.entries(versus.counts)) {
    const tr = element("tr", {"data-outcome": name});
    tr.appendChild(element("td", {}, name)); tr.appendChild(element("td", {}, count));
    table.appendChild(tr);
  }
  div.appendChild(table);
  for (const [name, documents] of Object.entries(versus.examples)) {
    if (!documents.length) continue;
    div.appendChild(element("div", {"class": "muted"}, `${name}, for example:`));
    for (const example of documents) {
      div.appendChild(element("div", {"class": "context example", "data-document": example.document},
        `doc ${example.document} · ${example.label} · ${example.text.replace(/\n/g, " ")}`));
    }
  }
  return div;
}

function openJob(index) {
  const job = DATA.jobs[index], row = DATA.rows[index];
  for (const tr of document.querySelectorAll("tr.job")) tr.classList.toggle("open", Number(tr.dataset.job) === index);
  const panel = document.getElementById("job");
  panel.replaceChildren(element("h2", {}, row.job));
  panel.setAttribute("data-job", index);
  const metrics = Object.entries(job.metrics).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v.toFixed(4)}`);
  const chosen = Object.entries(job.chosen).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  const text = metrics.join(" · ") + (chosen.length ? " · chosen " + chosen.join(", ") : "");
  panel.appendChild(element("p", {"class": "metrics"}, text));
  if (job.note) panel.appendChild(element("p", {"class": "note"}, job.note));
  for (const versus of job.versus) panel.appendChild(versusView(versus));
  for (const spec of job.cards) panel.appendChild(card(spec));
  try { history.replaceState(null, "", `#job=${index}`); } catch (error) { /* a sandboxed frame (W&B) */ }
}

document.getElementById("filter").addEventListener("input", drawTable);
drawTable();
const asked = /job=(\d+)/.exec(location.hash);
if (asked && DATA.jobs[Number(asked[1])]) openJob(Number(asked[1]));
else if (DATA.jobs.length === 1) openJob(0);
"""


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite number (a diverged probe's evidence) as None, which JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def render_page(data: dict[str, Any]) -> str:
    """The page for `explore.page_data`'s data, as one HTML document."""
    # "</script>" or "<!--" inside a script element would end or swallow it: no "<", ">" or "&" is left as such.
    payload = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    for character, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        payload = payload.replace(character, escaped)
    title = f"MOSAIC explore: {html.escape(data['directory'])}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
            "<p>Click a job for its probe's top features: where each latent fires most among the job's documents "
            "(tokens shaded by activation, the peak outlined). Click a heading to sort; type to filter.</p>"
            "<input id=\"filter\" placeholder=\"filter: words every row kept must hold\"> <span id=\"count\"></span>"
            "<table id=\"jobs\"></table><div id=\"job\"></div>"
            f"<script id=\"mosaic-data\" type=\"application/json\">{payload}</script>"
            f"<script>{SCRIPT}</script></body></html>\n")
