// The account: API tokens (/api/tokens), orgs and their members (/api/orgs), each namespace's Hub token
// (/api/namespaces/{ns}/hub-token, write-only) and usage (/v2/usage/{ns}) as a chart and a table.
import { ApiError, call, get } from "../api.js";
import { CopyButton, ErrorBanner, Time, Waiting, html, useEffect, useMemo, useRef, useState } from "../lib.js";
import uPlot from "../vendor/uPlot.esm.js";

const DAY = 86400 * 1000;
const enc = encodeURIComponent;

function asError(failure) {
  return failure instanceof ApiError ? failure : new ApiError(0, { error: String(failure) });
}

/** The message of ``error`` about ``field`` (the API's ``fields``), shown under that field. */
function FieldError({ error, field, id }) {
  const message = error?.about?.(field);
  return message ? html`<p class="field-error" id=${id}>${message}</p>` : null;
}

/** A button that asks before it acts, in the page (no window.confirm): a question, then Yes/Cancel. */
function Confirmed({ label, question, yes, onConfirm, danger = true }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const yesRef = useRef(null);
  useEffect(() => {
    if (asking) yesRef.current?.focus();
  }, [asking]);
  if (!asking) {
    return html`<button type="button" class="small" onClick=${() => setAsking(true)}>${label}</button>`;
  }
  const confirm = async () => {
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
      setAsking(false);
    }
  };
  return html`<span class="confirm" role="group" aria-label=${question}>
    <span>${question}</span>
    <button type="button" ref=${yesRef} class=${danger ? "small danger-small" : "small"} disabled=${busy} onClick=${confirm}>
      ${busy ? "Working…" : yes}
    </button>
    <button type="button" class="small" disabled=${busy} onClick=${() => setAsking(false)}>Cancel</button>
  </span>`;
}

function tokenState(t, now = Date.now()) {
  if (t.revokedAt) return ["revoked", "idle"];
  if (t.expiresAt && new Date(t.expiresAt).getTime() <= now) return ["expired", "bad"];
  return ["active", "ok"];
}

function Tokens({ me, namespaces }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [endpoints, setEndpoints] = useState([]);
  const [name, setName] = useState("");
  const [scope, setScope] = useState("");
  const [days, setDays] = useState("");
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState(null);
  const [created, setCreated] = useState(null);
  const load = () =>
    get(`/api/tokens?user=${enc(me.name)}`).then(
      (d) => {
        setItems(d.items);
        setError(null);
      },
      (failure) => setError(asError(failure)),
    );
  useEffect(() => {
    load();
    Promise.all(
      namespaces.map((ns) =>
        get(`/v2/endpoint/${enc(ns)}`).then(
          (d) => d.items.map((e) => `${ns}/${e.name}`),
          () => [],
        ),
      ),
    ).then((lists) => setEndpoints(lists.flat()));
  }, []);

  const create = async (event) => {
    event.preventDefault();
    setBusy(true);
    setFormError(null);
    const body = { name: name.trim() };
    if (scope) body.endpoint = scope;
    if (days.trim()) body.expiresInDays = /^\d+$/.test(days.trim()) ? Number(days.trim()) : days.trim();
    try {
      const { data } = await call("POST", "/api/tokens", body);
      setCreated(data);
      setName("");
      setScope("");
      setDays("");
      await load();
    } catch (failure) {
      setFormError(asError(failure));
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (token) => {
    try {
      await call("DELETE", `/api/tokens/${enc(token.id)}`);
      setError(null);
    } catch (failure) {
      setError(asError(failure));
    }
    await load();
  };
  const aria = (field, id) => (formError?.about(field) ? { "aria-invalid": "true", "aria-describedby": id } : {});

  return html`<section class="panel" aria-labelledby="tokens-title" id="tokens">
    <h2 id="tokens-title">API tokens</h2>
    <p class="help">
      A token works for the REST API, the gateway and the clients. One scoped to an endpoint works only there, on its
      data plane (the gateway). It is shown once, when it is created.
    </p>
    <form class="account-form" onSubmit=${create} novalidate aria-label="Create a token">
      <div>
        <label for="token-name">Token name</label>
        <input id="token-name" value=${name} maxlength="64" autocomplete="off" onInput=${(e) => setName(e.target.value)} ...${aria("name", "token-name-error")} />
        <${FieldError} error=${formError} field="name" id="token-name-error" />
      </div>
      <div>
        <label for="token-scope">Scope</label>
        <select id="token-scope" value=${scope} onChange=${(e) => setScope(e.target.value)} ...${aria("endpoint", "token-scope-error")}>
          <option value="">Everything I can reach</option>
          ${endpoints.map((e) => html`<option value=${e}>Only endpoint ${e}</option>`)}
        </select>
        <${FieldError} error=${formError} field="endpoint" id="token-scope-error" />
      </div>
      <div>
        <label for="token-days">Expires in days <span class="muted">(empty: never)</span></label>
        <input id="token-days" type="number" min="1" max="3650" inputmode="numeric" value=${days} onInput=${(e) => setDays(e.target.value)}
          ...${aria("expiresInDays", "token-days-error")} />
        <${FieldError} error=${formError} field="expiresInDays" id="token-days-error" />
      </div>
      <div class="account-actions">
        <button type="submit" disabled=${busy}>Create token</button>
      </div>
    </form>
    ${busy && html`<${Waiting}>Creating the token…<//>`}
    ${formError && html`<p class="error" role="alert">${formError.message}</p>`}
    ${created &&
    html`<div class="once" role="alert" aria-labelledby="once-title">
      <p id="once-title"><strong>Copy the token “${created.name}” now: it is shown only this once.</strong></p>
      <p>Dais keeps only a digest of it. If you lose it, revoke it and create another.</p>
      <p class="once-token"><code data-token>${created.token}</code> <${CopyButton} text=${created.token} label="Copy token" /></p>
      <button type="button" class="secondary" onClick=${() => setCreated(null)}>I have copied it</button>
    </div>`}
    <${ErrorBanner} error=${error} />
    ${items === null && !error && html`<${Waiting}>Loading tokens…<//>`}
    ${items &&
    html`<table class="cards tokens">
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Token</th>
          <th scope="col">Scope</th>
          <th scope="col">Created</th>
          <th scope="col">Expires</th>
          <th scope="col">State</th>
          <th scope="col"><span class="sr-only">Actions</span></th>
        </tr>
      </thead>
      <tbody>
        ${items.map((t) => {
          const [state, tone] = tokenState(t);
          return html`<tr key=${t.id} data-token-id=${t.id} data-name=${t.name}>
            <td data-label="Name" class="wrap">${t.name}</td>
            <td data-label="Token"><code>${t.prefix}…</code></td>
            <td data-label="Scope" class="wrap">${t.endpoint ? `endpoint ${t.endpoint}` : t.endpointId ? "one endpoint" : "everything"}</td>
            <td data-label="Created"><${Time} iso=${t.createdAt} /></td>
            <td data-label="Expires"><${Time} iso=${t.expiresAt} empty="never" /></td>
            <td data-label="State"><span class="badge ${tone}">${state}</span></td>
            <td data-label="">
              ${state !== "revoked" &&
              html`<${Confirmed}
                label=${`Revoke`}
                question=${`Revoke “${t.name}”? Calls with it fail at once.`}
                yes="Revoke"
                onConfirm=${() => revoke(t)}
              />`}
            </td>
          </tr>`;
        })}
      </tbody>
    </table>`}
  </section>`;
}

function Org({ org, onChanged }) {
  const [user, setUser] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const id = `org-${org.name}`;
  const change = async (method, member) => {
    setBusy(true);
    setError(null);
    try {
      const { data } = await call(method, `/api/orgs/${enc(org.name)}/members/${enc(member)}`);
      onChanged(data);
      if (method === "PUT") setUser("");
    } catch (failure) {
      setError(asError(failure));
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="account-org" data-org=${org.name}>
    <h3>${org.name}</h3>
    ${org.members.length === 0
      ? html`<p class="empty">No members: only admins reach it.</p>`
      : html`<ul class="members" aria-label=${`Members of ${org.name}`}>
          ${org.members.map(
            (m) => html`<li key=${m} data-member=${m}>
              <span>${m}</span>
              <${Confirmed}
                label="Remove"
                question=${`Remove ${m} from ${org.name}?`}
                yes="Remove"
                onConfirm=${() => change("DELETE", m)}
              />
            </li>`,
          )}
        </ul>`}
    <form class="account-form" onSubmit=${(e) => (e.preventDefault(), user.trim() && change("PUT", user.trim()))}>
      <div>
        <label for=${`${id}-add`}>Add a member to ${org.name}</label>
        <input id=${`${id}-add`} value=${user} autocomplete="off" placeholder="user name" onInput=${(e) => setUser(e.target.value)} />
      </div>
      <div class="account-actions"><button type="submit" class="secondary" disabled=${busy}>Add member</button></div>
    </form>
    ${busy && html`<${Waiting}>Saving…<//>`}
    <${ErrorBanner} error=${error} />
  </div>`;
}

function Orgs({ me }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [name, setName] = useState("");
  const [members, setMembers] = useState("");
  const [formError, setFormError] = useState(null);
  const [busy, setBusy] = useState(false);
  const load = () => get("/api/orgs").then((d) => setItems(d.items), (f) => setError(asError(f)));
  useEffect(() => {
    load();
  }, []);
  const create = async (event) => {
    event.preventDefault();
    setBusy(true);
    setFormError(null);
    try {
      const list = members.split(",").map((m) => m.trim()).filter(Boolean);
      await call("POST", "/api/orgs", { name: name.trim(), members: list });
      setName("");
      setMembers("");
      await load();
    } catch (failure) {
      setFormError(asError(failure));
    } finally {
      setBusy(false);
    }
  };
  const changed = (org) => setItems((current) => current.map((o) => (o.name === org.name ? org : o)));
  return html`<section class="panel" aria-labelledby="orgs-title" id="orgs">
    <h2 id="orgs-title">Orgs and members</h2>
    <p class="help">An org is a namespace its members share: each member reaches its endpoints. Members and admins manage its members.</p>
    <${ErrorBanner} error=${error} />
    ${items === null && !error && html`<${Waiting}>Loading orgs…<//>`}
    ${items && items.length === 0 && html`<p class="empty">You belong to no org.</p>`}
    ${items && items.map((org) => html`<${Org} key=${org.name} org=${org} onChanged=${changed} />`)}
    ${me.isAdmin &&
    html`<form class="account-form account-new-org" onSubmit=${create} novalidate aria-label="Create an org">
      <div>
        <label for="org-name">New org</label>
        <input id="org-name" value=${name} autocomplete="off" onInput=${(e) => setName(e.target.value)} />
        <${FieldError} error=${formError} field="name" id="org-name-error" />
      </div>
      <div>
        <label for="org-members">Members <span class="muted">(comma-separated)</span></label>
        <input id="org-members" value=${members} autocomplete="off" onInput=${(e) => setMembers(e.target.value)} />
        <${FieldError} error=${formError} field="members" id="org-members-error" />
      </div>
      <div class="account-actions"><button type="submit" class="secondary" disabled=${busy}>Create org</button></div>
    </form>`}
    ${formError && html`<p class="error" role="alert">${formError.message}</p>`}
  </section>`;
}

function HubToken({ namespaces }) {
  const [namespace, setNamespace] = useState(namespaces[0]);
  const [state, setState] = useState(null);
  const [error, setError] = useState(null);
  const [value, setValue] = useState("");
  const [busy, setBusy] = useState(false);
  const path = `/api/namespaces/${enc(namespace)}/hub-token`;
  useEffect(() => {
    setState(null);
    setError(null);
    get(path).then(setState, (f) => setError(asError(f)));
  }, [namespace]);
  const save = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setState((await call("PUT", path, { token: value.trim() })).data);
      setValue("");
    } catch (failure) {
      setError(asError(failure));
    } finally {
      setBusy(false);
    }
  };
  const forget = async () => {
    try {
      setState((await call("DELETE", path)).data);
    } catch (failure) {
      setError(asError(failure));
    }
  };
  return html`<section class="panel" aria-labelledby="hub-title" id="hub-token">
    <h2 id="hub-title">Hugging Face Hub token</h2>
    <p class="help">
      Used to download the namespace's gated and private models. Stored encrypted and never shown again: this page says
      only whether one is set. An endpoint's own <code>HF_TOKEN</code> secret takes precedence.
    </p>
    <label class="inline"
      >Namespace
      <select id="hub-namespace" value=${namespace} onChange=${(e) => setNamespace(e.target.value)}>
        ${namespaces.map((n) => html`<option value=${n}>${n}</option>`)}
      </select></label
    >
    ${state === null && !error && html`<${Waiting}>Checking…<//>`}
    ${state &&
    html`<p class="hub-state" role="status" data-set=${state.set ? "yes" : "no"}>
      ${state.set
        ? html`<span class="badge ok">set</span> A Hub token is set for ${state.namespace}, since <${Time} iso=${state.updatedAt} />.`
        : html`<span class="badge idle">not set</span> No Hub token is set for ${state.namespace}.`}
    </p>`}
    <form class="account-form" onSubmit=${save} novalidate>
      <div>
        <label for="hub-token-input">${state?.set ? "Replace it with" : "Hub token"}</label>
        <input
          id="hub-token-input"
          type="password"
          autocomplete="new-password"
          placeholder="hf_…"
          value=${value}
          onInput=${(e) => setValue(e.target.value)}
          ...${error?.about?.("token") ? { "aria-invalid": "true", "aria-describedby": "hub-token-error" } : {}}
        />
        <${FieldError} error=${error} field="token" id="hub-token-error" />
      </div>
      <div class="account-actions">
        <button type="submit" disabled=${busy || !value.trim()}>Save Hub token</button>
        ${state?.set &&
        html`<${Confirmed} label="Remove Hub token" question=${`Forget the Hub token of ${namespace}?`} yes="Remove" onConfirm=${forget} />`}
      </div>
    </form>
    ${busy && html`<${Waiting}>Saving…<//>`}
    ${error && !error.about?.("token") && html`<${ErrorBanner} error=${error} />`}
  </section>`;
}

function money(value) {
  return `$${value.toFixed(value > 0 && value < 1 ? 4 : 2)}`;
}

function hours(value) {
  return value.toFixed(value < 10 ? 3 : 1);
}

/** Every UTC day from ``from`` to ``to`` (ISO dates). */
function daysBetween(from, to) {
  const out = [];
  const start = Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
  for (let t = start; t <= to.getTime(); t += DAY) out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}

/** Decimals enough to tell ticks ``increment`` apart. */
function decimals(increment) {
  return Math.min(6, Math.max(0, -Math.floor(Math.log10(increment || 1))));
}

/** One bar per UTC day (x is the day's index, so each bar sits on its own day, the last one too). */
function BarChart({ days, values, label, format, prefix }) {
  const box = useRef(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const xs = days.map((_, i) => i);
    const size = () => ({ width: Math.max(element.clientWidth, 240), height: 220 });
    const plot = new uPlot(
      {
        ...size(),
        scales: {
          x: { time: false, range: () => [-0.6, days.length - 0.4] },
          y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
        },
        series: [
          { label: "Day", value: (u, i) => (i == null ? "" : days[i] || "") },
          {
            label,
            stroke: "#0b57d0",
            fill: "rgba(11, 87, 208, 0.35)",
            width: 1,
            paths: uPlot.paths.bars({ size: [0.7, 48] }),
            points: { show: false },
            value: (u, v) => (v == null ? "" : format(v)),
          },
        ],
        axes: [
          {
            incrs: [1, 2, 7, 14, 30],
            space: 48,
            values: (u, ticks) => ticks.map((i) => (Number.isInteger(i) && days[i] ? days[i].slice(5) : "")),
          },
          {
            size: 64,
            values: (u, ticks, axis, space, increment) => ticks.map((v) => prefix + v.toFixed(decimals(increment))),
          },
        ],
        legend: { show: true },
      },
      [xs, values],
      element,
    );
    const resize = new ResizeObserver(() => plot.setSize(size()));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [days, values, label]);
  const total = values.reduce((a, b) => a + b, 0);
  return html`<figure class="chart usage-chart">
    <div class="plot" ref=${box} role="img" aria-label=${`${label} per day: ${format(total)} in all over ${days.length} days`}></div>
    <figcaption class="help">${label} per UTC day (month-day on the axis). The table below has the same figures.</figcaption>
  </figure>`;
}

function Usage({ namespaces }) {
  const [namespace, setNamespace] = useState(namespaces[0]);
  const [span, setSpan] = useState("30");
  const [metric, setMetric] = useState("cost");
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setData(null);
    setError(null);
    const to = new Date();
    const from = new Date(to.getTime() - Number(span) * DAY);
    const params = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
    get(`/v2/usage/${enc(namespace)}?${params}`).then(setData, (f) => setError(asError(f)));
  }, [namespace, span]);
  const chart = useMemo(() => {
    if (!data) return null;
    const days = daysBetween(new Date(data.from), new Date(data.to));
    const byDay = Object.fromEntries(data.days.map((d) => [d.key, d]));
    const key = metric === "cost" ? "cost" : "replicaHours";
    return {
      days,
      values: days.map((d) => byDay[d]?.[key] || 0),
      label: metric === "cost" ? "Cost (USD)" : "Replica-hours",
      format: metric === "cost" ? money : hours,
      prefix: metric === "cost" ? "$" : "",
    };
  }, [data, metric]);
  const rows = data ? [...data.items].sort((a, b) => b.day.localeCompare(a.day) || a.endpoint.localeCompare(b.endpoint)) : [];
  return html`<section class="panel" aria-labelledby="usage-title" id="usage">
    <h2 id="usage-title">Usage</h2>
    <div class="toolbar">
      <label class="inline"
        >Namespace
        <select value=${namespace} onChange=${(e) => setNamespace(e.target.value)}>
          ${namespaces.map((n) => html`<option value=${n}>${n}</option>`)}
        </select></label
      >
      <label class="inline"
        >Period
        <select value=${span} onChange=${(e) => setSpan(e.target.value)}>
          <option value="7">Last 7 days</option>
          <option value="30">Last 30 days</option>
          <option value="90">Last 90 days</option>
        </select></label
      >
      <label class="inline"
        >Chart
        <select value=${metric} onChange=${(e) => setMetric(e.target.value)}>
          <option value="cost">Cost</option>
          <option value="hours">Replica-hours</option>
        </select></label
      >
    </div>
    <${ErrorBanner} error=${error} />
    ${!data && !error && html`<${Waiting}>Loading usage…<//>`}
    ${data &&
    html`<p class="usage-total" role="status">
      ${money(data.cost)} for ${hours(data.replicaHours)} replica-hours in ${namespace},
      from <${Time} iso=${data.from} /> to <${Time} iso=${data.to} />.
    </p>`}
    ${chart && html`<${BarChart} ...${chart} />`}
    ${data && rows.length === 0 && html`<p class="empty">No endpoint of ${namespace} ran in this period.</p>`}
    ${rows.length > 0 &&
    html`<table class="cards usage">
      <caption class="sr-only">Replica-hours and cost per endpoint and day</caption>
      <thead>
        <tr>
          <th scope="col">Day (UTC)</th>
          <th scope="col">Endpoint</th>
          <th scope="col">Hardware</th>
          <th scope="col" class="num">Replica-hours</th>
          <th scope="col" class="num">Cost</th>
        </tr>
      </thead>
      <tbody>
        ${rows.map(
          (r) => html`<tr key=${r.endpointId + r.hardware + r.day} data-endpoint=${r.endpoint}>
            <td data-label="Day">${r.day}</td>
            <td data-label="Endpoint" class="wrap">${r.endpoint}</td>
            <td data-label="Hardware" class="wrap">${r.hardware}</td>
            <td data-label="Replica-hours" class="num">${hours(r.replicaHours)}</td>
            <td data-label="Cost" class="num">${money(r.cost)}</td>
          </tr>`,
        )}
      </tbody>
    </table>`}
  </section>`;
}

// app.js's Lazy may render this screen once with another screen's props while that one loads: no namespaces then.
export function Account({ me, namespaces = [me.name] }) {
  return html`<section aria-labelledby="account-title" class="account">
    <div class="toolbar">
      <h1 id="account-title">Account</h1>
      <span class="muted">Signed in as ${me.name}${me.isAdmin ? " (admin)" : ""}</span>
    </div>
    <${Tokens} me=${me} namespaces=${namespaces} />
    <${Orgs} me=${me} />
    <${HubToken} namespaces=${namespaces} />
    <${Usage} namespaces=${namespaces} />
  </section>`;
}
