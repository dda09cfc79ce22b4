// One endpoint's page: its state and message on top, then tabs. Each tab is its own module under
// screens/endpoint/ (loaded on first use) exporting ``Tab({ namespace, name, endpoint, etag, reload })``.
import { call, follow } from "../api.js";
import { ErrorBanner, StateBadge, Waiting, html, useEffect, useState } from "../lib.js";

export const TABS = [
  ["overview", "Overview"],
  ["playground", "Playground"],
  ["analytics", "Analytics"],
  ["logs", "Logs"],
  ["scaling", "Scaling"],
  ["events", "Events"],
  ["settings", "Settings"],
];
const loaded = {};

function TabBody({ tab, ...props }) {
  const [Tab, setTab] = useState(() => loaded[tab]);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    if (loaded[tab]) return setTab(() => loaded[tab]);
    setTab(null);
    import(`./endpoint/${tab}.js`)
      .then((module) => {
        loaded[tab] = module.Tab;
        setTab(() => module.Tab);
      })
      .catch(setError);
  }, [tab]);
  if (error) return html`<${ErrorBanner} error=${error} />`;
  if (!Tab) return html`<${Waiting}>Loading…<//>`;
  return html`<${Tab} ...${props} />`;
}

export function EndpointPage({ namespace, name_: name, tab }) {
  const [endpoint, setEndpoint] = useState(null);
  const [etag, setEtag] = useState(null);
  const [error, setError] = useState(null);
  const path = `/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
  const reload = async () => {
    try {
      const answer = await call("GET", path);
      setEndpoint(answer.data);
      setEtag(answer.headers.get("ETag"));
      setError(null);
    } catch (failure) {
      setError(failure);
    }
  };
  useEffect(() => {
    setEndpoint(null);
    reload();
    const stop = new AbortController();
    follow(
      `/v2/endpoint/${encodeURIComponent(namespace)}?watch=true`,
      ({ data }) => {
        if (data.name === name) reload();
      },
      { signal: stop.signal },
    );
    return () => stop.abort();
  }, [namespace, name]);
  const known = TABS.some(([id]) => id === tab) ? tab : "overview";
  const base = `#/e/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
  return html`<section aria-labelledby="endpoint-title">
    <p><a href=${`#/ns/${encodeURIComponent(namespace)}`}>← Endpoints of ${namespace}</a></p>
    <div class="toolbar">
      <h1 id="endpoint-title">${name}</h1>
      ${endpoint && html`<${StateBadge} state=${endpoint.status.state} message=${endpoint.status.message} />`}
    </div>
    ${endpoint && html`<p class="message" role="status">${endpoint.status.message}</p>`}
    <${ErrorBanner} error=${error} />
    <nav class="tabs" aria-label="Endpoint">
      ${TABS.map(
        ([id, label]) => html`<a href=${`${base}/${id}`} aria-current=${id === known ? "page" : undefined}>${label}</a>`,
      )}
    </nav>
    ${endpoint
      ? html`<${TabBody} tab=${known} namespace=${namespace} name=${name} endpoint=${endpoint} etag=${etag} reload=${reload} />`
      : !error && html`<${Waiting}>Loading ${name}…<//>`}
  </section>`;
}


