// The endpoint list of one namespace: filtered on the server, updated live from the watch feed.
import { follow, get } from "../api.js";
import { CopyButton, ErrorBanner, StateBadge, Time, Waiting, go, html, useEffect, useRef, useState } from "../lib.js";

const STATES = ["", "running", "pending", "initializing", "updating", "scaledToZero", "paused", "failed", "updateFailed"];

export function engineOf(endpoint) {
  return Object.keys(endpoint.model?.image || {})[0] || "";
}

export function hardwareOf(endpoint) {
  const c = endpoint.compute || {};
  return `${c.instanceType} ${c.instanceSize}`;
}

const PAGE = 100; // rows fetched and drawn at once: a namespace of thousands opens as fast as one of a hundred

function query(namespace, search, state, cursor) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (search) params.set("search", search);
  if (state) params.set("state", state);
  if (cursor) params.set("cursor", cursor);
  return `/v2/endpoint/${encodeURIComponent(namespace)}?${params}`;
}

export function EndpointList({ namespace, namespaces }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [search, setSearch] = useState("");
  const [state, setState] = useState("");
  const [feed, setFeed] = useState("connecting");
  const [next, setNext] = useState(null);
  const [more, setMore] = useState(false);
  const filters = useRef({ search, state });
  filters.current = { search, state };
  const nextRef = useRef(null);
  nextRef.current = next;

  const load = async () => {
    try {
      const { search: s, state: st } = filters.current;
      const page = await get(query(namespace, s, st));
      setItems(page.items);
      setNext(page.next);
      setError(null);
    } catch (failure) {
      setError(failure);
    }
  };

  const loadMore = async () => {
    setMore(true);
    try {
      const { search: s, state: st } = filters.current;
      const page = await get(query(namespace, s, st, next));
      setItems((current) => [...(current || []), ...page.items]);
      setNext(page.next);
    } catch (failure) {
      setError(failure);
    } finally {
      setMore(false);
    }
  };

  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      load();
      return undefined;
    }
    const timer = setTimeout(load, 200); // typing: one request once the user pauses
    return () => clearTimeout(timer);
  }, [namespace, search, state]);

  useEffect(() => {
    const stop = new AbortController();
    const refresh = async (name) => {
      try {
        const fresh = await get(`/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
        setItems((current) => {
          if (!current) return current;
          const at = current.findIndex((e) => e.name === name);
          // A new endpoint joins the rows shown if it sorts among them (a later page shows it otherwise).
          const last = current.length ? current[current.length - 1].name : "";
          if (at < 0 && nextRef.current && name > last) return current;
          if (at < 0) return [...current, fresh].sort((a, b) => a.name.localeCompare(b.name));
          const next = current.slice();
          next[at] = fresh;
          return next;
        });
      } catch (failure) {
        if (failure.status === 404) setItems((current) => current && current.filter((e) => e.name !== name));
        return;
      }
    };
    follow(
      `/v2/endpoint/${encodeURIComponent(namespace)}?watch=true`,
      ({ event, data }) => {
        if (event === "deleted") setItems((current) => current && current.filter((e) => e.name !== data.name));
        else if (event === "reset") load();
        else if (data.name) refresh(data.name);
      },
      { signal: stop.signal, onState: setFeed },
    );
    return () => stop.abort();
  }, [namespace]);

  return html`<section aria-labelledby="list-title">
    <div class="toolbar">
      <h1 id="list-title">Endpoints</h1>
      <label class="inline"
        >Namespace
        <select value=${namespace} onChange=${(e) => go("ns", e.target.value)}>
          ${namespaces.map((n) => html`<option value=${n}>${n}</option>`)}
        </select></label
      >
      <label class="inline"
        >Search
        <input type="search" value=${search} placeholder="name or model" onInput=${(e) => setSearch(e.target.value)}
      /></label>
      <label class="inline"
        >State
        <select value=${state} onChange=${(e) => setState(e.target.value)}>
          ${STATES.map((s) => html`<option value=${s}>${s || "any"}</option>`)}
        </select></label
      >
      <span class="feed ${feed}" role="status" title="Updates arrive live from the server">${feed === "live" ? "live" : feed}</span>
      <a class="button" href="#/new">New endpoint</a>
    </div>
    <${ErrorBanner} error=${error} />
    ${items === null && !error && html`<${Waiting}>Loading endpoints…<//>`}
    ${items && items.length === 0 && html`<p class="empty">No endpoints${search || state ? " match" : " yet"}. <a href="#/new">Create one</a>.</p>`}
    ${items &&
    items.length > 0 &&
    html`<table class="endpoints">
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">State</th>
          <th scope="col">Model</th>
          <th scope="col">Engine</th>
          <th scope="col">Hardware</th>
          <th scope="col">Replicas</th>
          <th scope="col">URL</th>
          <th scope="col">Last activity</th>
          <th scope="col">Tags</th>
        </tr>
      </thead>
      <tbody>
        ${items.map(
          (e) => html`<tr key=${e.name} data-name=${e.name}>
            <td data-label="Name"><a href=${`#/e/${encodeURIComponent(namespace)}/${encodeURIComponent(e.name)}`}>${e.name}</a></td>
            <td data-label="State"><${StateBadge} state=${e.status.state} message=${e.status.message} /></td>
            <td data-label="Model" class="wrap">
              <span>${e.model.repository}<span class="muted"> @ ${(e.status.resolvedRevision || e.model.revision || "main").slice(0, 12)}</span></span>
            </td>
            <td data-label="Engine">${engineOf(e)}</td>
            <td data-label="Hardware">${hardwareOf(e)}</td>
            <td data-label="Replicas">${e.status.readyReplica} / ${e.status.targetReplica}</td>
            <td data-label="URL" class="wrap">
              ${e.status.url
                ? html`<span><code>${e.status.url}</code> <${CopyButton} text=${e.status.url} label="Copy URL" /></span>`
                : html`<span class="muted">—</span>`}
            </td>
            <td data-label="Last activity"><${Time} iso=${e.status.lastActivity} /></td>
            <td data-label="Tags">${(e.tags || []).map((t) => html`<span class="tag">${t}</span>`)}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
    ${next &&
    html`<p>
      <button type="button" class="secondary" onClick=${loadMore} disabled=${more}>
        ${more ? "Loading…" : `Show ${PAGE} more`}
      </button>
    </p>`}
  </section>`;
}
