// The overview tab: what the endpoint is doing and what to do about it, where it answers, what it runs on and
// costs, and the actions (pause, resume, scale to zero, delete), each confirmed in a modal dialog.
import { call, get } from "../../api.js";
import { CopyButton, ErrorBanner, Time, Waiting, go, html, useEffect, useRef, useState } from "../../lib.js";

const ADVICE = {
  running: "It serves requests at the URL below.",
  pending: "It waits for hardware or quota: the message above says what holds it. Free some, or choose other hardware in Settings.",
  initializing: "It is starting: the model is downloaded once, then loaded. Requests sent with X-Scale-Up-Timeout wait for it.",
  updating: "The latest change is rolling out; the previous replicas serve until the new ones are ready.",
  scaledToZero: "No replica runs and it costs nothing. The next request wakes it (send X-Scale-Up-Timeout to wait), or resume it now.",
  paused: "It is stopped until you resume it: requests get 503 and do not wake it. It costs nothing.",
  failed: "It could not start. Read the message above and the Logs tab, then fix the Settings (a smaller model or more memory): saving retries.",
  updateFailed: "The last change did not roll out. Read the Logs tab, then fix the Settings or undo the change.",
};
const BUSY = new Set(["pending", "initializing", "updating"]);

const ACTIONS = {
  pause: {
    label: "Pause",
    title: "Pause this endpoint?",
    body: "Every replica stops. Requests get 503 and do not wake it until you resume it. A paused endpoint costs nothing and does not count against your quota.",
    method: "POST",
    path: "/pause",
    working: "Pausing…",
    goal: "paused",
    allowed: (state) => state !== "paused",
  },
  resume: {
    label: "Resume",
    title: "Resume this endpoint?",
    body: "Replicas start again (down to its minimum, at least one): it is billed from then on.",
    method: "POST",
    path: "/resume",
    working: "Resuming…",
    goal: "running",
    allowed: (state) => state === "paused" || state === "scaledToZero",
  },
  scaleToZero: {
    label: "Scale to zero",
    title: "Scale this endpoint to zero?",
    body: "Every replica stops now. The next request wakes it; until a replica is ready, requests wait (with X-Scale-Up-Timeout) or get 503.",
    method: "POST",
    path: "/scale-to-zero",
    working: "Scaling to zero…",
    goal: "scaledToZero",
    allowed: (state) => state !== "paused" && state !== "scaledToZero",
  },
  delete: {
    label: "Delete",
    title: "Delete this endpoint?",
    body: "Its replicas stop and its URL stops answering. This cannot be undone; its audit trail is kept.",
    method: "DELETE",
    path: "",
    working: "Deleting…",
    danger: true,
    typed: true,
    allowed: () => true,
  },
};

export const money = (value) => `$${value.toFixed(value > 0 && value < 0.1 ? 4 : 2)}`;

/** The provider row of the endpoint's hardware, from ``GET /v2/provider/{ns}`` (null: not found). */
export function hardwareRow(provider, endpoint) {
  const c = endpoint.compute || {};
  for (const vendor of provider?.vendors || []) {
    if (vendor.name !== endpoint.provider?.vendor) continue;
    for (const region of vendor.regions || []) {
      if (region.name !== endpoint.provider?.region) continue;
      const found = (region.computes || []).find(
        (row) =>
          (c.id && row.id === c.id) ||
          (row.instanceType === c.instanceType && row.instanceSize === c.instanceSize && row.accelerator === c.accelerator),
      );
      if (found) return found;
    }
  }
  return null;
}

function imageOf(endpoint) {
  const image = endpoint.model?.image || {};
  const [kind] = Object.keys(image);
  if (!kind) return { kind: "default", detail: "" };
  const config = image[kind] || {};
  const detail = Object.keys(config).length ? JSON.stringify(config) : "(the engine catalog's default image)";
  return { kind, detail };
}

/** A modal confirmation: focus moves into it, Escape or Cancel closes it, focus returns to the opener. */
function Confirm({ action, name, onConfirm, onClose }) {
  const dialog = useRef(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [typed, setTyped] = useState("");
  useEffect(() => {
    const opened = dialog.current;
    const opener = document.activeElement;
    opened.showModal();
    return () => {
      if (opened.open) opened.close();
      if (opener && opener.isConnected) opener.focus();
    };
  }, []);
  const submit = async (event) => {
    event.preventDefault();
    if (busy || (action.typed && typed !== name)) return;
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
    } catch (failure) {
      setError(failure);
      setBusy(false);
    }
  };
  const ready = !action.typed || typed === name;
  return html`<dialog
    ref=${dialog}
    class="confirm"
    aria-labelledby="confirm-title"
    aria-describedby="confirm-body"
    onCancel=${(event) => busy && event.preventDefault()}
    onClose=${onClose}
  >
    <form onSubmit=${submit}>
      <h2 id="confirm-title">${action.title}</h2>
      <p id="confirm-body">${action.body}</p>
      ${action.typed &&
      html`<label for="confirm-name">Type the endpoint's name, <code>${name}</code>, to confirm</label>
        <input id="confirm-name" autocomplete="off" spellcheck="false" value=${typed} onInput=${(e) => setTyped(e.target.value)} autofocus />`}
      <${ErrorBanner} error=${error} />
      ${busy && html`<${Waiting}>${action.working}<//>`}
      <div class="actions">
        <button type="button" class="secondary" disabled=${busy} onClick=${() => dialog.current.close()} autofocus=${!action.typed}>
          Cancel
        </button>
        <button type="submit" class=${action.danger ? "danger" : ""} disabled=${busy || !ready}>${action.label} ${name}</button>
      </div>
    </form>
  </dialog>`;
}

export function Tab({ namespace, name, endpoint, reload }) {
  const [provider, setProvider] = useState(null);
  const [providerError, setProviderError] = useState(null);
  const [asking, setAsking] = useState(null); // the action whose dialog is open
  const [waiting, setWaiting] = useState(null); // the action done, until the state reaches its goal
  const state = endpoint.status.state;
  const path = `/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;

  useEffect(() => {
    get(`/v2/provider/${encodeURIComponent(namespace)}`).then(setProvider, setProviderError);
  }, [namespace]);
  useEffect(() => {
    if (waiting && (state === ACTIONS[waiting].goal || state === "failed" || state === "updateFailed")) setWaiting(null);
  }, [state, waiting]);

  const run = async (key) => {
    const action = ACTIONS[key];
    await call(action.method, path + action.path);
    if (key === "delete") {
      setAsking(null);
      go("ns", namespace);
      return;
    }
    setAsking(null);
    setWaiting(key);
    reload();
  };

  const row = hardwareRow(provider, endpoint);
  const scaling = endpoint.compute?.scaling || {};
  const { kind, detail } = imageOf(endpoint);
  const url = endpoint.status.url;
  const requested = endpoint.status.requestedRevision ?? endpoint.model?.revision;
  const resolved = endpoint.status.resolvedRevision;
  const price = row ? row.pricePerHour : null;

  return html`<div class="overview">
    <section class="panel" aria-labelledby="state-title">
      <h2 id="state-title">State: ${state}</h2>
      <p class="help">${ADVICE[state] || "The message above says what it is doing."}</p>
      ${BUSY.has(state) && html`<${Waiting}>${endpoint.status.message || state}<//>`}
      ${waiting && !BUSY.has(state) && state !== ACTIONS[waiting].goal && html`<${Waiting}>${ACTIONS[waiting].working} waiting for the endpoint to report ${ACTIONS[waiting].goal}<//>`}
      <div class="actions" role="group" aria-label="Actions">
        ${Object.entries(ACTIONS).map(
          ([key, action]) => html`<button
            type="button"
            class=${action.danger ? "danger" : "secondary"}
            disabled=${!action.allowed(state) || waiting === key}
            onClick=${() => setAsking(key)}
          >
            ${action.label}
          </button>`,
        )}
      </div>
    </section>

    <dl class="about">
      <dt>URL</dt>
      <dd>
        ${url
          ? html`<code class="wrap">${url}</code> <${CopyButton} text=${url} label="Copy URL" />`
          : html`<span class="muted">none yet: an endpoint gets its URL once it has run</span>`}
      </dd>
      <dt>Model</dt>
      <dd><span class="wrap">${endpoint.model.repository}</span> <span class="muted">(${endpoint.model.task || "task from the Hub"}, ${endpoint.model.framework})</span></dd>
      <dt>Revision</dt>
      <dd>
        requested <code>${requested || "default branch"}</code>, resolved ${resolved
          ? html`<code class="wrap" title=${resolved}>${resolved}</code>`
          : html`<span class="muted">not yet</span>`}
      </dd>
      <dt>Engine image</dt>
      <dd><code>${kind}</code> <span class="muted wrap">${detail}</span></dd>
      <dt>Hardware</dt>
      <dd>
        ${endpoint.compute.instanceType} ${endpoint.compute.instanceSize} (${endpoint.compute.accelerator})
        ${row &&
        html`<span class="muted"
          >: ${row.numAccelerators} × ${row.architecture}, ${row.numCpus} CPUs, ${row.memoryGb} GB memory${row.gpuMemoryGb ? `, ${row.gpuMemoryGb} GB GPU memory` : ""}</span
        >`}
      </dd>
      <dt>Cost per hour</dt>
      <dd>
        ${price === null
          ? html`<span class="muted">${providerError ? `unknown (${providerError.message})` : provider ? "unknown: this hardware is no longer in the catalog" : "…"}</span>`
          : html`${money(price)} per replica; now ${money(price * endpoint.status.readyReplica)} (${endpoint.status.readyReplica} running),
              at most ${money(price * (scaling.maxReplica || 1))} (${scaling.maxReplica} ${scaling.maxReplica === 1 ? "replica" : "replicas"})`}
      </dd>
      <dt>Replicas</dt>
      <dd>
        ${endpoint.status.readyReplica} ready of ${endpoint.status.targetReplica} wanted; scales between ${scaling.minReplica} and ${scaling.maxReplica}${scaling.scaleToZeroTimeout
          ? `, to zero after ${scaling.scaleToZeroTimeout} idle minutes`
          : ""}
      </dd>
      <dt>Access</dt>
      <dd>${endpoint.type}</dd>
      <dt>Created</dt>
      <dd><${Time} iso=${endpoint.status.createdAt} /> by ${endpoint.status.createdBy?.name}</dd>
      <dt>Updated</dt>
      <dd><${Time} iso=${endpoint.status.updatedAt} /> by ${endpoint.status.updatedBy?.name}</dd>
      <dt>Last request</dt>
      <dd><${Time} iso=${endpoint.status.lastActivity} /></dd>
    </dl>
    ${asking &&
    html`<${Confirm} key=${asking} action=${ACTIONS[asking]} name=${name} onConfirm=${() => run(asking)} onClose=${() => setAsking(null)} />`}
  </div>`;
}
