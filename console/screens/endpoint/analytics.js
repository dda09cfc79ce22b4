// The Analytics tab: the endpoint's metric history (GET …/metrics, every series in one request per refresh) as
// uPlot charts. A time range, drag-to-zoom (which asks the server for the zoomed range) and auto-refresh.
// ``Chart`` and the unit formats are shared with the Scaling tab.
import uPlot from "../../vendor/uPlot.esm.js";
import { get } from "../../api.js";
import { ErrorBanner, Waiting, html, useEffect, useRef, useState, utc } from "../../lib.js";

export const RANGES = [
  ["15m", "Last 15 minutes", 15 * 60],
  ["1h", "Last hour", 3600],
  ["6h", "Last 6 hours", 6 * 3600],
  ["24h", "Last 24 hours", 86400],
  ["7d", "Last 7 days", 7 * 86400],
];
const REFRESH_S = 15;

/** 3 significant digits, no exponent; thousands grouped. */
export function num(value) {
  if (value === 0) return "0";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en");
  return String(Number(value.toPrecision(3)));
}

function bytes(value) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return `${num(value)} ${units[i]}`;
}

export const UNITS = {
  perSecond: (v) => `${num(v)}/s`,
  ms: (v) => (v >= 1000 ? `${num(v / 1000)} s` : `${num(v)} ms`),
  count: num,
  cores: (v) => `${num(v)} cores`,
  bytes,
  percent: (v) => `${num(v)}%`,
};

const GREEN = "#1a7f37";
const BLUE = "#0b57d0";
const AMBER = "#b35c00";
const RED = "#b3261e";
const PURPLE = "#6f42c1";
const GREY = "#57606a";

/** The charts, each with its series: [key in the answer, legend label, colour, options]. ``optional`` series (and
 * charts made only of them) are left out when they hold no figure at all (GPU figures on a CPU endpoint). */
const CHARTS = [
  {
    id: "requests",
    title: "Requests by status",
    unit: "perSecond",
    series: [
      ["requests_2xx", "2xx", GREEN],
      ["requests_3xx", "3xx", BLUE, { optional: true }],
      ["requests_4xx", "4xx", AMBER],
      ["requests_5xx", "5xx", RED],
      ["failures", "failures", PURPLE, { dash: [6, 4] }],
    ],
  },
  {
    id: "latency",
    title: "Latency",
    unit: "ms",
    series: [
      ["latency_p50_ms", "p50", GREEN],
      ["latency_p90_ms", "p90", AMBER],
      ["latency_p99_ms", "p99", RED],
    ],
  },
  {
    id: "queue",
    title: "Pending and held requests",
    unit: "count",
    series: [
      ["pending", "pending", BLUE],
      ["held", "held (waking)", AMBER],
    ],
  },
  {
    id: "replicas",
    title: "Replicas: ready against desired",
    unit: "count",
    series: [
      ["replicas_ready", "ready", GREEN],
      ["replicas_desired", "desired", GREY, { dash: [6, 4], stepped: true }],
    ],
  },
  { id: "cpu", title: "CPU per replica", unit: "cores", series: [["cpu_cores", "CPU", BLUE]] },
  {
    id: "memory",
    title: "Memory per replica",
    unit: "bytes",
    series: [
      ["memory_bytes", "memory", BLUE],
      ["gpu_memory_bytes", "GPU memory", PURPLE, { optional: true }],
    ],
  },
  { id: "gpu", title: "GPU use per replica", unit: "percent", series: [["gpu_percent", "GPU", PURPLE, { optional: true }]] },
  {
    id: "tokens",
    title: "Tokens",
    unit: "perSecond",
    series: [
      ["tokens_in", "prompt", BLUE],
      ["tokens_out", "completion", GREEN],
    ],
  },
];

const hasFigure = (values) => !!values && values.some((v) => v != null);

/** The last figure of a series (what its legend shows while the cursor is elsewhere). */
function latest(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] != null) return values[i];
  return null;
}

/** uPlot draws points only where they are sparse: a figure between two gaps (null) would be invisible. */
function isolated(u, index, show) {
  if (show) return null;
  const values = u.data[index];
  const gap = (i) => i < 0 || i >= values.length || values[i] === null;
  const found = [];
  for (let i = 0; i < values.length; i += 1) if (values[i] != null && gap(i - 1) && gap(i + 1)) found.push(i);
  return found.length ? found : null;
}

/** The y axis's width from its longest label (about 7 px a character at uPlot's 12 px font). */
function axisSize(u, values) {
  const longest = Math.max(1, ...(values || []).map((v) => (v == null ? 0 : String(v).length)));
  return Math.ceil(longest * 7 + 18);
}

/** One uPlot chart that fits its container's width (a ResizeObserver), with cursors synchronised across charts.
 * ``series``: [{label, color, dash, stepped, spanGaps}]; ``data``: [x (Unix seconds), ...y]. With ``onZoom``,
 * dragging across it calls ``onZoom(from, to)`` (seconds) instead of zooming itself: the caller asks again. */
export function Chart({ title, unit, series, data, onZoom, onDrawn, height = 190, sync = "dais-charts" }) {
  const box = useRef(null);
  const plot = useRef(null);
  const shown = useRef(null);
  const calls = useRef({});
  calls.current = { onZoom, onDrawn };
  const format = UNITS[unit] || num;

  useEffect(() => {
    const element = box.current;
    const options = {
      width: Math.max(160, element.clientWidth),
      height,
      series: [
        {
          label: "Time",
          value: (u, v, i, at) => (at == null ? "latest" : v == null ? "—" : utc(new Date(v * 1000).toISOString())),
        },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          dash: s.dash,
          spanGaps: !!s.spanGaps,
          paths: s.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
          value: (u, v, i, at) => {
            const shown = at == null ? latest(u.data[i]) : v;
            return shown == null ? "—" : format(shown);
          },
          points: { size: 6, filter: isolated },
        })),
      ],
      scales: {
        // Every figure here is a count, a rate or a size: from 0, and a flat 0 line is not a range of [-1, 1].
        y: { range: (u, min, max) => uPlot.rangeNum(0, max > 0 ? max : 1, 0.1, true) },
      },
      axes: [
        { space: 80 }, // room for "11/29/26 4:37pm" under the first tick
        { size: axisSize, values: (u, splits) => splits.map((v) => (v == null ? "" : format(v))) },
      ],
      cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: sync } },
      hooks: {
        setSelect: [
          (u) => {
            const { left, width } = u.select;
            if (width > 3 && calls.current.onZoom) {
              calls.current.onZoom(u.posToVal(left, "x"), u.posToVal(left + width, "x"));
            }
            if (width > 0) u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          },
        ],
        draw: [() => calls.current.onDrawn && calls.current.onDrawn()],
      },
    };
    plot.current = new uPlot(options, data, element);
    shown.current = data;
    const observer = new ResizeObserver(() => {
      const width = element.clientWidth;
      if (width && plot.current && Math.abs(width - plot.current.width) > 1) plot.current.setSize({ width, height });
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    if (plot.current && shown.current !== data) {
      shown.current = data;
      plot.current.setData(data);
    }
  }, [data]);

  const id = `chart-${title.replace(/\W+/g, "-").toLowerCase()}`;
  return html`<figure class="chart" aria-labelledby=${id}>
    <h2 id=${id}>${title}</h2>
    <div class="plot" ref=${box}></div>
  </figure>`;
}

/** The answer as uPlot data per chart (charts without any figure of theirs left out when optional). */
function prepare(answer) {
  const x = answer.timestamps.map((t) => Date.parse(t) / 1000);
  const nothing = () => x.map(() => null);
  const charts = [];
  for (const chart of CHARTS) {
    const kept = chart.series.filter(([key, , , o = {}]) => !o.optional || hasFigure(answer.series[key]));
    if (!kept.length) continue;
    charts.push({
      ...chart,
      key: `${chart.id}:${kept.map(([key]) => key).join(",")}`,
      lines: kept.map(([, label, color, o = {}]) => ({ label, color, ...o })),
      data: [x, ...kept.map(([key]) => answer.series[key] || nothing())],
    });
  }
  const any = Object.values(answer.series).some(hasFigure);
  return { ...answer, charts, any };
}

function every(step) {
  if (step % 86400 === 0) return `${step / 86400} d`;
  if (step % 3600 === 0) return `${step / 3600} h`;
  if (step % 60 === 0) return `${step / 60} min`;
  return `${step} s`;
}

const SOURCES = {
  embedded: "Dais's embedded store (the gateway and the controller write it every 10 s)",
  prometheus: "Prometheus",
};

export function Tab({ namespace, name }) {
  const [range, setRange] = useState("1h");
  const [zoom, setZoom] = useState(null); // {from, to} in Unix seconds, or null for the range up to now
  const [auto, setAuto] = useState(false);
  const [answer, setAnswer] = useState(null);
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(false);
  const asked = useRef(0);
  const timing = useRef(null);
  const section = useRef(null);
  const path = `/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/metrics`;

  const load = async () => {
    const mine = ++asked.current;
    const start = performance.now();
    const span = RANGES.find(([id]) => id === range)[2];
    const now = Date.now();
    const [from, to] = zoom ? [zoom.from * 1000, zoom.to * 1000] : [now - span * 1000, now];
    const params = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString() });
    setLoading(true);
    try {
      const found = prepare(await get(`${path}?${params}`));
      if (mine !== asked.current) return; // a later question was asked meanwhile
      timing.current = { start, left: found.any ? found.charts.length : 0 };
      setAnswer(found);
      setError(null);
      if (!found.any) drawn();
    } catch (failure) {
      if (mine === asked.current) setError(failure);
    } finally {
      if (mine === asked.current) setLoading(false);
    }
  };

  // The time from asking to the last chart drawn: a performance measure "dais:analytics" (and data-render-ms).
  const drawn = () => {
    const pending = timing.current;
    if (!pending) return;
    pending.left -= 1;
    if (pending.left > 0) return;
    timing.current = null;
    const end = performance.now();
    performance.measure("dais:analytics", { start: pending.start, end });
    if (section.current) section.current.dataset.renderMs = (end - pending.start).toFixed(1);
  };

  useEffect(() => {
    load();
  }, [range, zoom, namespace, name]);

  useEffect(() => {
    if (!auto) return undefined;
    const timer = setInterval(() => document.visibilityState === "visible" && load(), REFRESH_S * 1000);
    return () => clearInterval(timer);
  }, [auto, range, zoom, namespace, name]);

  const zoomTo = (from, to) => {
    if (to - from >= 20) setZoom({ from: Math.floor(from), to: Math.ceil(to) });
  };

  const pick = (event) => {
    setZoom(null);
    setRange(event.target.value);
  };

  return html`<section class="analytics" ref=${section} aria-label="Analytics">
    <div class="toolbar">
      <label class="inline"
        >Time range
        <select value=${range} onChange=${pick}>
          ${RANGES.map(([id, label]) => html`<option value=${id}>${label}</option>`)}
        </select></label
      >
      <label class="inline"
        ><input type="checkbox" checked=${auto} onChange=${(e) => setAuto(e.target.checked)} />
        ${`Auto-refresh every ${REFRESH_S} s`}</label
      >
      <button type="button" class="secondary" onClick=${load} disabled=${loading}>Refresh</button>
      ${zoom && html`<button type="button" class="secondary" onClick=${() => setZoom(null)}>Reset zoom</button>`}
      ${loading && answer && html`<span class="muted" role="status">Updating…</span>`}
    </div>
    <${ErrorBanner} error=${error} />
    ${!answer && !error && html`<${Waiting}>Loading the endpoint's figures…<//>`}
    ${answer &&
    html`<p class="help">
      ${`${zoom ? "Zoomed to " : ""}${utc(answer.from)} to ${utc(answer.to)}, a point every ${every(answer.step)}, `}
      ${`from ${SOURCES[answer.source] || answer.source}. Times on the charts are your browser's.`}
      ${answer.any ? " Drag across a chart to zoom in; the legends show the latest figures." : ""}
    </p>`}
    ${answer &&
    !answer.any &&
    html`<p class="empty">
      ${`No figures for this range yet. Each point covers a whole step (${every(answer.step)} here) and appears once `}
      ${"that step has ended; requests through the endpoint's URL fill the traffic charts."}
    </p>`}
    ${answer &&
    answer.any &&
    html`<div class="charts">
      ${answer.charts.map(
        (c) =>
          html`<${Chart}
            key=${c.key}
            title=${c.title}
            unit=${c.unit}
            series=${c.lines}
            data=${c.data}
            onZoom=${zoomTo}
            onDrawn=${drawn}
          />`,
      )}
    </div>`}
  </section>`;
}
