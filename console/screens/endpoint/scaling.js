// The Scaling tab: the autoscaling policy in force, the autoscaler's decisions with their reasons (GET …/scaling),
// and a chart of desired replicas (the decisions, as a step line) against ready ones (the metrics route's
// replicas_ready).
import { get } from "../../api.js";
import { ErrorBanner, Time, Waiting, html, useEffect, useMemo, useState } from "../../lib.js";
import { Chart, num } from "./analytics.js";

const WEEK_S = 7 * 86400;
const LEAST_S = 3600; // the chart covers at least the last hour, or the endpoint's life if shorter
const SHORTEST_S = 300;

function duration(seconds) {
  if (seconds == null) return "—";
  if (seconds >= 3600 && seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds >= 60 && seconds % 60 === 0) return `${seconds / 60} min`;
  return `${num(seconds)} s`;
}

function measureText(measure) {
  const parts = [];
  if (measure.hardwareUsage != null) parts.push(`hardware use above ${num(measure.hardwareUsage)}% adds replicas`);
  if (measure.pendingRequests != null) {
    parts.push(`more than ${num(measure.pendingRequests)} pending requests per replica adds replicas`);
  }
  for (const [key, value] of Object.entries(measure)) {
    if (key !== "hardwareUsage" && key !== "pendingRequests") parts.push(`${key} ${value}`);
  }
  return parts.join("; ") || "—";
}

function Policy({ policy }) {
  const facts = [
    ["Replicas", `${policy.minReplica} to ${policy.maxReplica}`],
    [
      "Scale to zero",
      policy.scaleToZeroTimeout ? `after ${policy.scaleToZeroTimeout} min without a request` : "never",
    ],
    ["Measure", measureText(policy.measure || {})],
    ["Evaluated every", duration(policy.tickSeconds)],
    ["Use averaged over", duration(policy.utilizationWindowSeconds)],
    ["Up at most every", duration(policy.upIntervalSeconds)],
    ["Down at most every", duration(policy.downIntervalSeconds)],
    ["Down only after", `${duration(policy.stabilizationSeconds)} of lower counts (stabilization)`],
    ["Tolerance", `±${num(policy.tolerance * 100)}%`],
  ];
  return html`<dl class="facts">
    ${facts.map(([term, value]) => html`<dt>${term}</dt><dd>${value}</dd>`)}
  </dl>`;
}

function inputText(value) {
  if (value == null) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function Decision({ d }) {
  const steps = [];
  if (d.raw !== d.final) steps.push(`wanted ${d.raw}`);
  if (d.stabilized !== d.raw && d.stabilized !== d.final) steps.push(`stabilized ${d.stabilized}`);
  const change = d.previous === d.final ? `held at ${d.final}` : `${d.previous} → ${d.final}`;
  const entries = Object.entries(d.inputs || {});
  return html`<li class=${d.previous === d.final ? "held" : "changed"}>
    <div class="decision-head">
      <${Time} iso=${d.time} />
      <strong>${change}</strong>
      ${steps.length > 0 && html`<span class="muted">(${steps.join(", ")})</span>`}
    </div>
    <p class="reason">${d.reason}</p>
    ${entries.length > 0 &&
    html`<details>
      <summary>Inputs</summary>
      <dl class="facts">${entries.map(([key, value]) => html`<dt>${key}</dt><dd>${inputText(value)}</dd>`)}</dl>
    </details>`}
  </li>`;
}

/** [x, ready, desired] for uPlot: the metric's timestamps and the decisions' times joined; ready is left out
 * (undefined: the line goes on) where only a decision falls, desired holds each decision's final count. */
function chartData(decisions, history, until) {
  const ordered = decisions.map((d) => ({ t: Date.parse(d.time) / 1000, final: d.final })).sort((a, b) => a.t - b.t);
  const ready = new Map();
  if (history) {
    const values = history.series.replicas_ready || [];
    history.timestamps.forEach((t, i) => ready.set(Date.parse(t) / 1000, values[i]));
  }
  const x = [...new Set([...ready.keys(), ...ordered.map((d) => d.t), until])].sort((a, b) => a - b);
  let at = -1;
  const desired = x.map((t) => {
    while (at + 1 < ordered.length && ordered[at + 1].t <= t) at += 1;
    return at >= 0 ? ordered[at].final : null;
  });
  return [x, x.map((t) => (ready.has(t) ? ready.get(t) : undefined)), desired];
}

const LINES = [
  { label: "ready", color: "#1a7f37" },
  { label: "desired (decisions)", color: "#0b57d0", stepped: true, dash: [6, 4] },
];

export function Tab({ namespace, name, endpoint }) {
  const [view, setView] = useState(null);
  const [history, setHistory] = useState(null);
  const [chartError, setChartError] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const base = `/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;

  const load = async () => {
    setBusy(true);
    try {
      const found = await get(`${base}/scaling`);
      const now = Date.now() / 1000;
      // From the oldest decision listed, or the last hour; not before the endpoint was made; a week at most.
      const oldest = Math.min(now - LEAST_S, ...found.decisions.map((d) => Date.parse(d.time) / 1000));
      const created = Date.parse(endpoint?.status?.createdAt) / 1000 - 60;
      const from = Math.min(now - SHORTEST_S, Math.max(oldest, now - WEEK_S, Number.isNaN(created) ? 0 : created));
      const params = new URLSearchParams({
        from: new Date(from * 1000).toISOString(),
        to: new Date(now * 1000).toISOString(),
        series: "replicas_ready",
      });
      try {
        setHistory({ ...(await get(`${base}/metrics?${params}`)), until: now });
        setChartError(null);
      } catch (failure) {
        setHistory({ timestamps: [], series: {}, until: now });
        setChartError(failure);
      }
      setView(found);
      setError(null);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };

  // Again as the endpoint changes (the page follows its live feed): a new decision comes with a new count.
  const status = endpoint && endpoint.status;
  useEffect(() => {
    load();
  }, [namespace, name, status && status.targetReplica, status && status.readyReplica, status && status.state]);

  const data = useMemo(() => view && chartData(view.decisions, history, history.until), [view, history]);
  if (error && !view) return html`<${ErrorBanner} error=${error} />`;
  if (!view) return html`<${Waiting}>Loading the scaling decisions…<//>`;
  return html`<section class="scaling" aria-label="Scaling">
    <div class="toolbar">
      <p class="summary">
        Desired replicas: <strong>${view.desiredReplicas == null ? "not decided yet" : view.desiredReplicas}</strong>
        <span class="muted"> — ${view.reason}</span>
        ${view.updatedAt && html` <span class="muted">(<${Time} iso=${view.updatedAt} />)</span>`}
      </p>
      <button type="button" class="secondary" onClick=${load} disabled=${busy}>Refresh</button>
    </div>
    <${ErrorBanner} error=${error} />
    <div class="scaling-grid">
      <${Chart} title="Desired against ready" unit="count" series=${LINES} data=${data} sync="dais-scaling" />
      <div class="panel">
        <h2>Policy in force</h2>
        <${Policy} policy=${view.policy} />
      </div>
    </div>
    ${chartError && html`<p class="notice" role="note">Ready replicas are missing from the chart: ${chartError.message}</p>`}
    <h2>Decisions <span class="muted">(newest first)</span></h2>
    ${view.decisions.length === 0
      ? html`<p class="empty">No decision yet: the autoscaler evaluates the endpoint every ${duration(view.policy.tickSeconds)}.</p>`
      : html`<ol class="decisions">
          ${view.decisions.map((d) => html`<${Decision} key=${d.time} d=${d} />`)}
        </ol>`}
  </section>`;
}
