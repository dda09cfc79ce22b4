// The events tab: the endpoint's audit trail, newest first (who did what, when, and the change field by field),
// a page at a time with "Load more" (the API's ``before`` cursor).
import { get } from "../../api.js";
import { ErrorBanner, Time, Waiting, html, useEffect, useRef, useState } from "../../lib.js";

const PAGE = 20;
const ACTIONS = {
  "endpoint.create": "Created",
  "endpoint.update": "Updated",
  "endpoint.pause": "Paused",
  "endpoint.resume": "Resumed",
  "endpoint.scale_to_zero": "Scaled to zero",
  "endpoint.delete": "Deleted",
  failed: "Failed",
  recovered: "Recovered",
  wake: "Woken by a request",
};

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/** A value of a diff, as text: strings quoted (so "" and "null" differ from nothing), nothing as "unset". */
export function shown(value) {
  if (value === null || value === undefined) return "unset";
  return JSON.stringify(value);
}

/** ``{a: {b: 1}}`` → [["a.b", 1]]: an object's leaves with their paths (an empty object is a leaf). */
export function leaves(value, prefix) {
  if (!isObject(value) || Object.keys(value).length === 0) return [[prefix, value]];
  return Object.keys(value)
    .sort()
    .flatMap((key) => leaves(value[key], `${prefix}.${key}`));
}

/** The rows of a diff: a created or removed object is spelled out leaf by leaf (those it sets). */
export function diffRows(diff) {
  const rows = [];
  for (const { path, old, new: now } of diff || []) {
    const set = (value) => value !== null && value !== undefined;
    if (isObject(now) && !set(old)) {
      for (const [leaf, value] of leaves(now, path)) if (set(value)) rows.push({ path: leaf, old: null, new: value });
    } else if (isObject(old) && !set(now)) {
      for (const [leaf, value] of leaves(old, path)) if (set(value)) rows.push({ path: leaf, old: value, new: null });
    } else {
      rows.push({ path, old, new: now });
    }
  }
  return rows;
}

/** A list of changes, each "path: old → new", rendered as text (values are whatever anyone stored). */
export function Diff({ rows, label }) {
  if (!rows.length) return html`<p class="muted">No field changed.</p>`;
  return html`<ul class="diff" aria-label=${label}>
    ${rows.map(
      (row) => html`<li>
        <code class="path">${row.path}</code>: <span class="old">${shown(row.old)}</span> → <span class="new">${shown(row.new)}</span>
      </li>`,
    )}
  </ul>`;
}

function Event({ event }) {
  const rows = diffRows(event.diff);
  return html`<li class="event" data-action=${event.action}>
    <div class="event-head">
      <strong>${ACTIONS[event.action] || event.action}</strong>
      <span>by <span class="actor">${event.actor}</span></span>
      <${Time} iso=${event.time} />
      <code class="muted">${event.action}</code>
    </div>
    <${Diff} rows=${rows} label=${`Changes of event ${event.id}`} />
    ${(event.requestId || event.sourceAddress) &&
    html`<p class="help">
      ${event.requestId && html`request <code>${event.requestId}</code>`} ${event.sourceAddress && html`from ${event.sourceAddress}`}
    </p>`}
  </li>`;
}

export function Tab({ namespace, name, endpoint, etag }) {
  const state = endpoint.status.state; // failed, recovered, woken: events without a new generation
  const [items, setItems] = useState(null);
  const [next, setNext] = useState(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState(null);
  const path = `/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/events`;
  const started = useRef(false); // the first page is in: later refreshes only add what is newer
  const listed = useRef([]);
  listed.current = items || [];

  // The first page, and again whenever the endpoint changes (a new generation is a new event): newest on top.
  useEffect(() => {
    get(`${path}?limit=${PAGE}`).then(
      (page) => {
        setError(null);
        if (!started.current) {
          started.current = true;
          setItems(page.items);
          setNext(page.next);
          return;
        }
        const known = new Set(listed.current.map((e) => e.id));
        if (!page.items.some((e) => known.has(e.id)) && page.next) {
          setItems(page.items); // more happened than a page holds: start again from the newest
          setNext(page.next);
        } else {
          setItems([...page.items.filter((e) => !known.has(e.id)), ...listed.current]);
        }
      },
      setError,
    );
  }, [path, etag, state]);

  const more = async () => {
    setLoading(true);
    try {
      const page = await get(`${path}?limit=${PAGE}&before=${next}`);
      setItems((current) => {
        const known = new Set(current.map((e) => e.id));
        return [...current, ...page.items.filter((e) => !known.has(e.id))];
      });
      setNext(page.next);
      setError(null);
    } catch (failure) {
      setError(failure);
    } finally {
      setLoading(false);
    }
  };

  return html`<section aria-labelledby="events-title">
    <h2 id="events-title">Events</h2>
    <p class="help">Every change to this endpoint: who made it, when, and each field's old and new value (secrets redacted).</p>
    <${ErrorBanner} error=${error} />
    ${items === null && !error && html`<${Waiting}>Loading events…<//>`}
    ${items && items.length === 0 && html`<p class="empty">No events yet.</p>`}
    ${items && items.length > 0 && html`<ol class="events">${items.map((e) => html`<${Event} key=${e.id} event=${e} />`)}</ol>`}
    ${next &&
    html`<button type="button" class="secondary" disabled=${loading} onClick=${more}>
      ${loading ? "Loading…" : "Load more"}
    </button>`}
  </section>`;
}
