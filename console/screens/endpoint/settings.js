// The settings tab: an update sent with ``If-Match`` (the ETag of the version the form started from). When
// someone else changed the endpoint in between, the API answers 412: the tab fetches the current version and
// shows what changed, field by field, and the user chooses to keep their edits on top of it or to drop them.
import { ApiError, call } from "../../api.js";
import { ErrorBanner, Time, html, useEffect, useState } from "../../lib.js";
import { Diff, leaves } from "./events.js";

const TYPES = [
  ["public", "Public: anyone, no token needed"],
  ["authenticated", "Authenticated: any valid Dais token"],
  ["private", "Private: members of the namespace, admins, or a token scoped to this endpoint"],
];
const SCALING = ["minReplica", "maxReplica", "scaleToZeroTimeout"];
const IGNORED = new Set(["status", "accountId", "healthRoute"]); // not part of what anyone edits

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const tagList = (text) => [...new Set(text.split(",").map((t) => t.trim()).filter(Boolean))];

/** The form's values from an endpoint (numbers as the text of their inputs). */
export function formOf(endpoint) {
  const scaling = endpoint.compute?.scaling || {};
  return {
    type: endpoint.type,
    minReplica: String(scaling.minReplica ?? 1),
    maxReplica: String(scaling.maxReplica ?? 1),
    scaleToZeroTimeout: scaling.scaleToZeroTimeout == null ? "" : String(scaling.scaleToZeroTimeout),
    revision: endpoint.model?.revision || "",
    env: Object.entries(endpoint.model?.env || {}).map(([key, value]) => ({ key, value })),
    tags: (endpoint.tags || []).join(", "),
  };
}

function number(text) {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  const value = Number(trimmed);
  return Number.isInteger(value) ? value : trimmed; // not a whole number: the API says so, next to the field
}

const envOf = (rows) => Object.fromEntries(rows.filter((r) => r.key.trim() || r.value).map((r) => [r.key.trim(), r.value]));

/** The PUT body: only what the user changed from ``start`` (the API deep-merges it). */
export function patchOf(form, start) {
  const patch = {};
  if (form.type !== start.type) patch.type = form.type;
  if (SCALING.some((key) => form[key].trim() !== start[key].trim())) {
    patch.compute = { scaling: Object.fromEntries(SCALING.map((key) => [key, number(form[key])])) };
  }
  if (form.revision.trim() !== start.revision.trim()) patch.model = { revision: form.revision.trim() || null };
  if (!same(envOf(form.env), envOf(start.env))) patch.model = { ...patch.model, env: envOf(form.env) };
  if (!same(tagList(form.tags), tagList(start.tags))) patch.tags = tagList(form.tags);
  return patch;
}

/** The user's edits moved onto a newer version: a field they did not touch takes the newer value. */
export function rebase(form, oldStart, newStart) {
  return Object.fromEntries(Object.keys(form).map((key) => [key, same(form[key], oldStart[key]) ? newStart[key] : form[key]]));
}

/** The fields that differ between two versions of an endpoint, as diff rows. */
export function versionDiff(before, after) {
  const flat = (endpoint) =>
    new Map(
      Object.keys(endpoint)
        .filter((key) => !IGNORED.has(key))
        .flatMap((key) => leaves(endpoint[key], key)),
    );
  const old = flat(before);
  const now = flat(after);
  const paths = [...new Set([...old.keys(), ...now.keys()])].sort();
  return paths.filter((p) => !same(old.get(p) ?? null, now.get(p) ?? null)).map((p) => ({ path: p, old: old.get(p), new: now.get(p) }));
}

function FieldError({ id, message }) {
  return message ? html`<p class="field-error" id=${id}>${message}</p>` : null;
}

export function Tab({ namespace, name, endpoint, etag, reload }) {
  const [base, setBase] = useState({ endpoint, etag }); // the version the form started from
  const [form, setForm] = useState(() => formOf(endpoint));
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(null);
  const [conflict, setConflict] = useState(null);
  const path = `/v2/endpoint/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
  const start = formOf(base.endpoint);
  const patch = patchOf(form, start);
  const dirty = Object.keys(patch).length > 0;

  const adopt = (fresh, freshEtag) => {
    setBase({ endpoint: fresh, etag: freshEtag });
    setForm(formOf(fresh));
    setConflict(null);
  };

  // A newer version while the form is untouched: show it. With edits in progress, keep them (a save says).
  useEffect(() => {
    if (etag !== base.etag && !dirty && !saving) adopt(endpoint, etag);
  }, [etag]);

  const set = (key) => (event) => setForm({ ...form, [key]: event.target.value });
  const setEnv = (index, key) => (event) =>
    setForm({ ...form, env: form.env.map((row, i) => (i === index ? { ...row, [key]: event.target.value } : row)) });
  const about = (field) => (error instanceof ApiError ? error.about(field) : null);
  const exactly = (field) => (error instanceof ApiError ? error.fields.find((f) => f.field === field)?.message : null);

  const save = async (event) => {
    event.preventDefault();
    if (!dirty || saving) return;
    setSaving(true);
    setError(null);
    setSaved(null);
    try {
      const answer = await call("PUT", path, patch, base.etag ? { "If-Match": base.etag } : {});
      adopt(answer.data, answer.headers.get("ETag"));
      setSaved(`Saved: this is now version ${answer.data.status.generation}.`);
      reload();
    } catch (failure) {
      if (failure.status !== 412) {
        setError(failure);
      } else {
        try {
          const fresh = await call("GET", path);
          setConflict({ endpoint: fresh.data, etag: fresh.headers.get("ETag"), rows: versionDiff(base.endpoint, fresh.data) });
        } catch (again) {
          setError(again);
        }
      }
    } finally {
      setSaving(false);
    }
  };

  const keepMine = () => {
    const next = rebase(form, start, formOf(conflict.endpoint));
    setBase({ endpoint: conflict.endpoint, etag: conflict.etag });
    setForm(next);
    setConflict(null);
  };

  const fieldMessages = error instanceof ApiError ? error.fields.length : 0;
  const described = (id, message) => (message ? { "aria-describedby": id, "aria-invalid": "true" } : {});
  const scalingError = exactly("compute.scaling") || exactly("compute");
  const envError = about("model.env");
  const types = TYPES.some(([t]) => t === form.type) ? TYPES : [...TYPES, [form.type, `${form.type} (legacy name of private)`]];

  return html`<form class="settings" onSubmit=${save} aria-labelledby="settings-title" novalidate>
    <h2 id="settings-title">Settings</h2>
    <p class="help">
      Changes are saved only if nobody else changed the endpoint since this form was filled (version ${base.endpoint.status.generation}).
    </p>
    ${conflict &&
    html`<div class="conflict" role="alert">
      <p>
        <strong>Not saved: someone else changed this endpoint</strong> since you started editing
        (version ${base.endpoint.status.generation} → ${conflict.endpoint.status.generation}, by ${conflict.endpoint.status.updatedBy?.name}${", "}<${Time}
          iso=${conflict.endpoint.status.updatedAt}
        />). What they changed:
      </p>
      <${Diff} rows=${conflict.rows} label="What changed since you started editing" />
      <div class="actions">
        <button type="button" onClick=${keepMine}>Keep my edits on top of theirs</button>
        <button type="button" class="secondary" onClick=${() => adopt(conflict.endpoint, conflict.etag)}>Discard my edits</button>
      </div>
    </div>`}
    ${!conflict && dirty && etag !== base.etag && html`<p class="note" role="status">This endpoint changed since you started editing: saving will show what changed.</p>`}

    <fieldset>
      <legend>Access</legend>
      <label for="set-type">Who may call it</label>
      <select id="set-type" value=${form.type} onChange=${set("type")} ...${described("set-type-error", about("type"))}>
        ${types.map(([value, label]) => html`<option value=${value}>${label}</option>`)}
      </select>
      <${FieldError} id="set-type-error" message=${about("type")} />
    </fieldset>

    <fieldset>
      <legend>Scaling</legend>
      <div class="fields">
        <div>
          <label for="set-min">Min replicas</label>
          <input id="set-min" type="number" min="0" inputmode="numeric" value=${form.minReplica} onInput=${set("minReplica")}
            ...${described("set-min-error", about("compute.scaling.minReplica"))} />
          <${FieldError} id="set-min-error" message=${about("compute.scaling.minReplica")} />
        </div>
        <div>
          <label for="set-max">Max replicas</label>
          <input id="set-max" type="number" min="1" inputmode="numeric" value=${form.maxReplica} onInput=${set("maxReplica")}
            ...${described("set-max-error", about("compute.scaling.maxReplica"))} />
          <${FieldError} id="set-max-error" message=${about("compute.scaling.maxReplica")} />
        </div>
        <div>
          <label for="set-zero">Scale to zero after (idle minutes)</label>
          <input id="set-zero" type="number" min="1" inputmode="numeric" placeholder="never" value=${form.scaleToZeroTimeout}
            onInput=${set("scaleToZeroTimeout")} ...${described("set-zero-error", about("compute.scaling.scaleToZeroTimeout"))} />
          <${FieldError} id="set-zero-error" message=${about("compute.scaling.scaleToZeroTimeout")} />
        </div>
      </div>
      <p class="help">Empty: never. Scaling to zero needs min replicas 0.</p>
      <${FieldError} id="set-scaling-error" message=${scalingError} />
    </fieldset>

    <fieldset>
      <legend>Model</legend>
      <label for="set-revision">Revision of <span class="wrap">${base.endpoint.model.repository}</span></label>
      <input id="set-revision" autocomplete="off" spellcheck="false" placeholder="default branch" value=${form.revision}
        onInput=${set("revision")} ...${described("set-revision-error", about("model.revision") || about("model.repository"))} />
      <p class="help">
        A branch, tag or commit; empty: the default branch. Saving pins it to its commit
        (now <code class="wrap">${base.endpoint.status.resolvedRevision || "not resolved"}</code>).
      </p>
      <${FieldError} id="set-revision-error" message=${about("model.revision") || about("model.repository")} />
    </fieldset>

    <fieldset>
      <legend>Environment variables</legend>
      ${form.env.length === 0 && html`<p class="muted">None.</p>`}
      ${form.env.map(
        (row, i) => html`<div class="env-row" key=${i}>
          <label for=${`set-env-key-${i}`} class="sr-only">Variable ${i + 1} name</label>
          <input id=${`set-env-key-${i}`} placeholder="NAME" autocomplete="off" spellcheck="false" value=${row.key} onInput=${setEnv(i, "key")} />
          <span aria-hidden="true">=</span>
          <label for=${`set-env-value-${i}`} class="sr-only">Variable ${i + 1} value</label>
          <input id=${`set-env-value-${i}`} placeholder="value" autocomplete="off" spellcheck="false" value=${row.value} onInput=${setEnv(i, "value")} />
          <button type="button" class="small" onClick=${() => setForm({ ...form, env: form.env.filter((_, j) => j !== i) })}
            aria-label=${`Remove variable ${i + 1}`}>Remove</button>
        </div>`,
      )}
      <button type="button" class="small" onClick=${() => setForm({ ...form, env: [...form.env, { key: "", value: "" }] })}>Add variable</button>
      <p class="help">Plain settings the engine sees. Secrets are write-only and are not shown here.</p>
      <${FieldError} id="set-env-error" message=${envError} />
    </fieldset>

    <fieldset>
      <legend>Tags</legend>
      <label for="set-tags">Tags (comma-separated)</label>
      <input id="set-tags" autocomplete="off" value=${form.tags} onInput=${set("tags")} ...${described("set-tags-error", about("tags"))} />
      <${FieldError} id="set-tags-error" message=${about("tags")} />
    </fieldset>

    ${error && (fieldMessages ? html`<p class="error" role="alert">Not saved: ${error.message}</p>` : html`<${ErrorBanner} error=${error} />`)}
    ${saved && !dirty && html`<p class="saved" role="status">${saved}</p>`}
    <div class="actions">
      <button type="submit" disabled=${!dirty || saving}>${saving ? "Saving…" : "Save changes"}</button>
      <button type="button" class="secondary" disabled=${!dirty || saving} onClick=${() => { setForm(formOf(base.endpoint)); setError(null); }}>
        Discard changes
      </button>
    </div>
  </form>`;
}
