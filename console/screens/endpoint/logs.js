// The Logs tab: the endpoint's replicas (gone ones too) and their lines (GET …/logs), searched on the server,
// followed live (server-sent events of the same route), downloaded as text. Every line is rendered as text.
import { follow, get } from "../../api.js";
import { ErrorBanner, Waiting, html, useEffect, useRef, useState, utc } from "../../lib.js";

const TAIL = 1000; // lines asked for
const KEEP = 5000; // lines kept while following (the oldest go first)
const PLAIN_SOURCES = new Set(["local", "kubernetes and the log store"]);

// The same line may come with its time to the microsecond (a page) or to the millisecond (the live feed).
const keyOf = (line) => `${Date.parse(line.time)}\u0000${line.replica}\u0000${line.stream}\u0000${line.line}`;

/** "16:29:54.155" (UTC), from an ISO time with any number of fractional digits. */
function clock(iso) {
  const found = new Date(iso);
  return Number.isNaN(found.getTime()) ? iso : found.toISOString().slice(11, 23);
}

function replicaLabel(r) {
  const restarts = r.restarts ? `, ${r.restarts} restart${r.restarts === 1 ? "" : "s"}` : "";
  if (!r.stoppedAt) return `${r.id}: running since ${utc(r.startedAt)}${restarts}`;
  const exit = r.exitCode == null ? "" : `, exit code ${r.exitCode}`;
  return `${r.id} (gone): stopped ${utc(r.stoppedAt)}${exit}${restarts}`;
}

function asText(lines) {
  return lines.map((l) => `${l.time} ${l.replica} ${l.stream}: ${l.line}\n`).join("");
}

export function Tab({ namespace, name }) {
  const [replica, setReplica] = useState("");
  const [typed, setTyped] = useState("");
  const [search, setSearch] = useState("");
  const [following, setFollowing] = useState(false);
  const [feed, setFeed] = useState(null);
  const [answer, setAnswer] = useState(null); // {source, replicas} of the last answer
  const [lines, setLines] = useState(null);
  const [loaded, setLoaded] = useState(0); // bumped as each load completes: following starts from there
  const [error, setError] = useState(null);
  const box = useRef(null);
  const stick = useRef(true); // keep the list scrolled to its end while the reader is there
  const seen = useRef(new Set());
  const current = useRef([]);
  current.current = lines || [];
  const path = `/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/logs`;

  const params = (extra = {}) => {
    const found = new URLSearchParams({ tail: String(TAIL), ...extra });
    if (replica) found.set("replica", replica);
    if (search) found.set("search", search);
    return found;
  };

  useEffect(() => {
    const timer = setTimeout(() => setSearch(typed.trim()), 300); // one request once the user pauses
    return () => clearTimeout(timer);
  }, [typed]);

  useEffect(() => {
    let gone = false;
    setError(null);
    get(`${path}?${params()}`).then(
      (found) => {
        if (gone) return;
        seen.current = new Set(found.lines.map(keyOf));
        stick.current = true;
        setAnswer({ source: found.source, replicas: found.replicas });
        setLines(found.lines);
        setLoaded((n) => n + 1);
      },
      (failure) => !gone && setError(failure),
    );
    return () => {
      gone = true;
    };
  }, [namespace, name, replica, search]);

  useEffect(() => {
    if (!following || !loaded) return undefined;
    const stop = new AbortController();
    const last = current.current.at(-1);
    const waiting = [];
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      const fresh = waiting.splice(0);
      if (fresh.length) setLines((shown) => [...(shown || []), ...fresh].slice(-KEEP));
    };
    follow(
      `${path}?${params({ follow: "true", ...(last ? { since: last.time } : {}) })}`,
      ({ data }) => {
        const key = keyOf(data);
        if (seen.current.has(key)) return; // sent again after a reconnection, or already shown
        seen.current.add(key);
        waiting.push(data);
        if (!scheduled) {
          scheduled = true;
          setTimeout(flush, 50); // a burst of lines is one render
        }
      },
      { signal: stop.signal, onState: (state, failure) => (setFeed(state), failure && setError(failure)) },
    );
    return () => {
      stop.abort();
      setFeed(null);
    };
  }, [following, loaded]);

  useEffect(() => {
    const element = box.current;
    if (element && stick.current) element.scrollTop = element.scrollHeight;
  }, [lines]);

  const scrolled = (event) => {
    const e = event.currentTarget;
    stick.current = e.scrollHeight - e.scrollTop - e.clientHeight < 40;
  };

  // The shown lines as a text file, made when asked for: the link's address is set as it is clicked.
  const download = (event) => {
    const url = URL.createObjectURL(new Blob([asText(current.current)], { type: "text/plain;charset=utf-8" }));
    event.currentTarget.href = url;
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  };

  const replicas = answer ? answer.replicas : [];
  const many = new Set((lines || []).map((l) => l.replica)).size > 1;
  const source = answer && answer.source;
  return html`<section class="logs" aria-label="Logs">
    <div class="toolbar">
      <label class="inline"
        >Replica
        <select value=${replica} onChange=${(e) => setReplica(e.target.value)}>
          <option value="">All replicas</option>
          ${replicas.map((r) => html`<option value=${r.id}>${replicaLabel(r)}</option>`)}
        </select></label
      >
      <label class="inline"
        >Search
        <input type="search" value=${typed} placeholder="text in the line" onInput=${(e) => setTyped(e.target.value)}
      /></label>
      <label class="inline"
        ><input type="checkbox" checked=${following} onChange=${(e) => setFollowing(e.target.checked)} /> Follow</label
      >
      ${following && html`<span class="feed ${feed || ""}" role="status">${feed === "live" ? "following" : feed || "connecting"}</span>`}
      <a class="button secondary" href="#" download=${`${name}-logs.txt`} onClick=${download}>Download</a>
    </div>
    ${source &&
    (PLAIN_SOURCES.has(source)
      ? html`<p class="help">Lines from ${source === "local" ? "the local runtime's files" : source}, oldest first; times in UTC.</p>`
      : html`<p class="notice" role="note">Lines from ${source}</p>`)}
    <${ErrorBanner} error=${error} />
    ${lines === null && !error && html`<${Waiting}>Loading the logs…<//>`}
    ${lines &&
    lines.length === 0 &&
    html`<p class="empty">${search ? "No line contains that text." : "No lines yet."}${following ? " New lines appear here." : ""}</p>`}
    ${lines &&
    lines.length > 0 &&
    html`<ol class="log-lines" ref=${box} onScroll=${scrolled} tabindex="0" aria-label="Log lines">
      ${lines.map(
        (l, i) => html`<li key=${i} class=${l.stream === "stderr" ? "stderr" : undefined}>
          <time datetime=${l.time} title=${utc(l.time)}>${clock(l.time)}</time>
          ${many && html`<span class="replica">${l.replica}</span>`}
          ${l.stream === "stderr" && html`<span class="stream">stderr</span>`}
          <span class="text">${l.line}</span>
        </li>`,
      )}
    </ol>`}
  </section>`;
}
