// The create form: POST /v2/endpoint/{namespace}, with the Hub lookup (GET /v2/recommendation) suggesting the task,
// the engine and the hardware, the hardware tiles of GET /v2/provider/{namespace}, the model catalog
// (GET /api/v1/catalog/list) to start from, and the same call as curl and huggingface_hub, updated as the form
// changes. The API's errors appear next to the field they name.
import { ApiError, call, get } from "../api.js";
import { CopyButton, ErrorBanner, Waiting, go, html, useEffect, useMemo, useRef, useState } from "../lib.js";

export const ENGINES = [
  ["huggingface", "Automatic: Dais picks the engine for the task"],
  ["llamacpp", "llama.cpp (GGUF files)"],
  ["vLLM", "vLLM"],
  ["sGLang", "SGLang"],
  ["tgi", "Text Generation Inference"],
  ["tei", "Text Embeddings Inference"],
  ["hfServe", "HF serve"],
  ["custom", "Custom container image"],
];
const CATALOG_ENGINES = {
  llamacpp: "llamacpp",
  vllm: "vLLM",
  tgi: "tgi",
  tei: "tei",
  sglang: "sGLang",
  "hf-serve": "hfServe",
  "tgi-neuron": "tgiNeuron",
  "vllm-neuron": "vLLMNeuron",
};
const TASKS = [
  "text-generation",
  "feature-extraction",
  "sentence-similarity",
  "text-classification",
  "token-classification",
  "fill-mask",
  "question-answering",
  "summarization",
  "translation",
  "zero-shot-classification",
  "image-classification",
  "automatic-speech-recognition",
  "text-to-image",
  "custom",
];
const TYPES = [
  ["private", "Private: members of the namespace, with their token"],
  ["authenticated", "Authenticated: any valid Dais token"],
  ["public", "Public: anyone, no token"],
];
const MEASURES = [
  ["", "Default: 1.5 pending per replica"],
  ["pendingRequests", "Pending requests per replica"],
  ["hardwareUsage", "Hardware usage (%)"],
];
const UNUSABLE = new Set(["deprecated", "not_available"]);

/** Where each API field's message is shown, most specific first; anything else goes to the banner only. */
const SLOTS = [
  "name",
  "type",
  "compute.scaling.minReplica",
  "compute.scaling.maxReplica",
  "compute.scaling.scaleToZeroTimeout",
  "compute.scaling.measure",
  "compute.scaling",
  "compute",
  "provider",
  "model.repository",
  "model.revision",
  "model.task",
  "model.image",
  "model.framework",
  "model.env",
  "model.secrets",
  "tags",
];

function slotOf(field) {
  return SLOTS.find((s) => field === s || field.startsWith(s + ".") || field.startsWith(s + "[")) || null;
}

/** ``field`` → its messages, for the fields the form shows; the rest under ``null``. */
function placeErrors(error) {
  const placed = {};
  for (const f of error?.fields || []) {
    let slot = slotOf(f.field);
    if (slot === "provider") slot = "compute"; // both are the hardware tiles
    (placed[slot] ||= []).push(f.field === slot ? f.message : `${f.field}: ${f.message}`);
  }
  return placed;
}

const idOf = (slot) => "err-" + slot.replace(/[^a-zA-Z0-9]+/g, "-");

function FieldError({ errors, slot }) {
  const messages = errors[slot];
  if (!messages) return null;
  return html`<p class="field-error" id=${idOf(slot)} data-field=${slot}>${messages.join("; ")}</p>`;
}

/** aria props for a control whose errors are in ``slots`` (one or several), described by ``help`` too. */
function described(errors, slots, help) {
  const mine = (Array.isArray(slots) ? slots : [slots]).filter((s) => errors[s]);
  const ids = [help, ...mine.map(idOf)].filter(Boolean).join(" ");
  return { "aria-invalid": mine.length ? "true" : undefined, "aria-describedby": ids || undefined };
}

export function gib(bytes) {
  if (bytes == null) return "?";
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

function price(perHour) {
  return `$${Number(perHour).toFixed(perHour > 0 && perHour < 1 ? 3 : 2)}/h`;
}

function memoryOf(c) {
  return c.accelerator === "gpu" && c.gpuMemoryGb ? c.gpuMemoryGb * c.numAccelerators : c.memoryGb;
}

function slug(text, room = 25) {
  let s = text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  if (s.length > room) {
    const cut = s.slice(0, room + 1);
    s = cut.includes("-") ? cut.slice(0, cut.lastIndexOf("-")) : s.slice(0, room);
  }
  return s || "endpoint";
}

function suffix() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => alphabet[b % alphabet.length]).join("");
}

/** "12" → 12, "true" → true, anything else stays text: engine options are numbers, flags or words. */
function optionValue(text) {
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (text === "true" || text === "false") return text === "true";
  return text;
}

function count(text) {
  const trimmed = String(text).trim();
  return /^-?\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : trimmed;
}

const rowsOf = (object) => Object.entries(object || {}).map(([key, value]) => ({ key, value: String(value) }));
const objectOf = (rows, convert = (v) => v) =>
  Object.fromEntries(rows.filter((r) => r.key.trim()).map((r) => [r.key.trim(), convert(r.value)]));

export const SECRET_PLACEHOLDER = "<secret value>";

/** The create body the form stands for (§7.1 of the reference); secret values shown as a placeholder when ``masked``. */
export function buildBody(form, compute, { masked = false } = {}) {
  const image = { ...objectOf(form.options, optionValue) };
  if (form.engine === "llamacpp" && form.ggufFile.trim()) image.modelPath = form.ggufFile.trim();
  if (form.engine === "custom") image.url = form.imageUrl.trim();
  const scaling = {};
  if (String(form.minReplica).trim() !== "") scaling.minReplica = count(form.minReplica);
  if (String(form.maxReplica).trim() !== "") scaling.maxReplica = count(form.maxReplica);
  scaling.scaleToZeroTimeout = String(form.scaleToZero).trim() === "" ? null : count(form.scaleToZero);
  if (form.measure) {
    scaling.measure = { [form.measure]: String(form.threshold).trim() === "" ? null : count(form.threshold) };
  }
  const model = {
    repository: form.repository.trim(),
    revision: form.revision.trim() || null,
    framework: form.engine === "llamacpp" ? "llamacpp" : form.engine === "custom" ? "custom" : "pytorch",
    image: { [form.engine]: image },
  };
  if (form.task.trim()) model.task = form.task.trim();
  const env = objectOf(form.env);
  if (Object.keys(env).length) model.env = env;
  const secrets = objectOf(form.secrets, (v) => (masked ? SECRET_PLACEHOLDER : v));
  if (Object.keys(secrets).length) model.secrets = secrets;
  const body = {
    name: form.name.trim(),
    type: form.type,
    provider: compute ? { vendor: compute.vendor, region: compute.region } : {},
    compute: compute
      ? { accelerator: compute.accelerator, instanceType: compute.instanceType, instanceSize: compute.instanceSize, scaling }
      : { scaling },
    model,
  };
  const tags = form.tags
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
  if (tags.length) body.tags = tags;
  return body;
}

const shellQuote = (text) => `'${text.replace(/'/g, `'\\''`)}'`;

export function curlOf(namespace, body, origin = location.origin) {
  return [
    `export DAIS=${origin}   # and DAIS_TOKEN=dais_… (your token)`,
    `curl -s -X POST "$DAIS/v2/endpoint/${encodeURIComponent(namespace)}" \\`,
    `  -H "Authorization: Bearer $DAIS_TOKEN" -H 'content-type: application/json' \\`,
    `  -d ${shellQuote(JSON.stringify(body, null, 2))}`,
  ].join("\n");
}

function py(value, indent = "    ") {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => py(v, indent)).join(", ")}]`;
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${py(v, indent)}`).join(", ")}}`;
}

export function pythonOf(namespace, body, origin = location.origin) {
  const { compute = {}, model = {}, provider = {} } = body;
  const scaling = compute.scaling || {};
  const args = [
    [null, JSON.stringify(body.name)],
    ["namespace", namespace],
    ["repository", model.repository],
    ["framework", model.framework],
    ["task", model.task],
    ["revision", model.revision],
    ["accelerator", compute.accelerator],
    ["vendor", provider.vendor],
    ["region", provider.region],
    ["instance_type", compute.instanceType],
    ["instance_size", compute.instanceSize],
    ["min_replica", scaling.minReplica],
    ["max_replica", scaling.maxReplica],
    ["scale_to_zero_timeout", scaling.scaleToZeroTimeout],
  ];
  if (scaling.measure) {
    const [metric, threshold] = Object.entries(scaling.measure)[0];
    args.push(["scaling_metric", metric], ["scaling_threshold", threshold]);
  }
  args.push(["type", body.type]);
  const [[variant, config]] = Object.entries(model.image || { huggingface: {} });
  if (variant !== "huggingface" || Object.keys(config).length) args.push(["custom_image", model.image]);
  if (model.env) args.push(["env", model.env]);
  if (model.secrets) args.push(["secrets", model.secrets]);
  if (body.tags) args.push(["tags", body.tags]);
  const lines = args
    .filter(([key, value]) => key === null || (value !== undefined && !(value === null && key !== "scale_to_zero_timeout")))
    .map(([key, value]) => (key === null ? `    ${value},` : `    ${key}=${py(value)},`));
  return [
    "import os",
    "import huggingface_hub.constants as C",
    `C.INFERENCE_ENDPOINTS_ENDPOINT = ${JSON.stringify(origin + "/v2")}`,
    "from huggingface_hub import HfApi",
    "",
    `api = HfApi(endpoint=${JSON.stringify(origin)}, token=os.environ["DAIS_TOKEN"])`,
    "endpoint = api.create_inference_endpoint(",
    ...lines,
    ")",
    "endpoint.wait()  # initializing (downloading…) → running",
  ].join("\n");
}

/** The same create with the ``dais`` command line (``dais endpoints create``, the body on stdin). */
export function cliOf(namespace, body, origin = location.origin) {
  return [
    `export DAIS_URL=${origin}   # and DAIS_TOKEN=dais_… (your token)`,
    `dais endpoints create ${namespace} <<'EOF'`,
    JSON.stringify(body, null, 2),
    "EOF",
  ].join("\n");
}

const EQUIVALENTS = { curl: curlOf, python: pythonOf, dais: cliOf };

function EquivalentRequest({ namespace, body }) {
  const [kind, setKind] = useState("curl");
  const text = EQUIVALENTS[kind](namespace, body);
  return html`<aside class="create-equivalent panel" aria-labelledby="equivalent-title">
    <div class="toolbar">
      <h2 id="equivalent-title">Equivalent request</h2>
      <${CopyButton} text=${text} label=${{ curl: "Copy curl", python: "Copy Python", dais: "Copy dais command" }[kind]} />
    </div>
    <fieldset class="segmented">
      <legend class="sr-only">Show the request as</legend>
      ${[
        ["curl", "curl"],
        ["python", "huggingface_hub"],
        ["dais", "dais CLI"],
      ].map(
        ([value, label]) => html`<label class="inline"
          ><input type="radio" name="equivalent" value=${value} checked=${kind === value} onChange=${() => setKind(value)} />
          ${label}</label
        >`,
      )}
    </fieldset>
    <pre class="create-code" data-kind=${kind} tabindex="0" aria-label=${`The same call with ${kind}`}><code>${text}</code></pre>
    <p class="help">
      Updated as you type. Secret values are left out (${SECRET_PLACEHOLDER}); the token is read from <code>DAIS_TOKEN</code>.
      <code>hf endpoints deploy</code> works too.
    </p>
  </aside>`;
}

function Rows({ title, rows, onChange, kind, errors, slot, help }) {
  const secret = kind === "secret";
  const update = (index, key, value) => onChange(rows.map((r, i) => (i === index ? { ...r, [key]: value } : r)));
  return html`<fieldset class="create-rows" id=${`rows-${kind}`}>
    <legend>${title}</legend>
    ${help && html`<p class="help" id=${`help-${kind}`}>${help}</p>`}
    ${rows.map(
      (row, index) => html`<div class="create-row" key=${index}>
        <input
          aria-label=${`${title} ${index + 1}: name`}
          placeholder="NAME"
          value=${row.key}
          autocomplete="off"
          spellcheck="false"
          onInput=${(e) => update(index, "key", e.target.value)}
          ...${described(errors, slot)}
        />
        <input
          aria-label=${`${title} ${index + 1}: value`}
          placeholder=${secret ? "write-only" : "value"}
          type=${secret ? "password" : "text"}
          autocomplete=${secret ? "new-password" : "off"}
          spellcheck="false"
          value=${row.value}
          onInput=${(e) => update(index, "value", e.target.value)}
        />
        <button type="button" class="small" aria-label=${`Remove ${title} ${index + 1}`} onClick=${() =>
          onChange(rows.filter((_, i) => i !== index))}>Remove</button>
      </div>`,
    )}
    <button type="button" class="small" onClick=${() => onChange([...rows, { key: "", value: "" }])}>
      Add ${title.toLowerCase().replace(/s$/, "")}
    </button>
    <${FieldError} errors=${errors} slot=${slot} />
  </fieldset>`;
}

function Lookup({ lookup }) {
  if (lookup.status === "idle") return html`<p class="help" id="lookup">Type a Hub model id: Dais looks it up.</p>`;
  if (lookup.status === "loading") return html`<div id="lookup"><${Waiting}>Looking the model up on the Hub…<//></div>`;
  if (lookup.status === "error")
    return html`<p class="field-error" id="lookup" role="status">${lookup.error.message}</p>`;
  const d = lookup.data;
  return html`<dl class="facts create-lookup" id="lookup" role="status" aria-label="What the Hub says">
    <dt>Size</dt>
    <dd>${gib(d.weightBytes)} of weights (${d.weightSource}); needs ${gib(d.neededBytes)} with headroom</dd>
    <dt>Task</dt>
    <dd>${d.task || "not given by the Hub"}</dd>
    <dt>Engine</dt>
    <dd>${d.engine}${d.ggufFile ? ` (${d.ggufFile})` : ""}</dd>
    <dt>Access</dt>
    <dd>${d.gated ? html`<span class="badge busy">gated</span> needs a Hub token with access` : "open"}</dd>
    <dt>Revision</dt>
    <dd><code>${d.revision.slice(0, 12)}</code></dd>
  </dl>`;
}

function HardwareTiles({ rows, lookup, selected, onSelect, errors }) {
  if (rows === null) return html`<${Waiting}>Loading hardware…<//>`;
  if (!rows.length) return html`<p class="empty">This namespace has no hardware.</p>`;
  const fitting = lookup.status === "ok" ? new Set(lookup.data.items.map((r) => r.id)) : null;
  const recommended = lookup.status === "ok" ? lookup.data.items[0]?.id : null;
  return html`<fieldset class="create-hardware" id="hardware" ...${described(errors, "compute")}>
    <legend>Hardware</legend>
    ${lookup.status === "ok" && !recommended && html`<p class="field-error">No hardware here holds this model.</p>`}
    <div class="tiles">
      ${rows.map((c) => {
        const left = c.quota.maxAccelerators - c.quota.usedAccelerators;
        const unusable = UNUSABLE.has(c.status);
        const fit = unusable ? c.status.replace("_", " ") : fitting ? (fitting.has(c.id) ? "fits" : "too small") : null;
        return html`<label class="tile ${c.id === recommended ? "recommended" : ""} ${c.id === selected ? "chosen" : ""}" key=${c.id}>
          <input type="radio" name="hardware" value=${c.id} checked=${c.id === selected} onChange=${() => onSelect(c.id)} />
          <span class="tile-title">${c.accelerator} · ${c.instanceType} ${c.instanceSize}</span>
          <span class="muted">${c.architecture} · ${c.vendor}/${c.region}</span>
          <span>${memoryOf(c)} GB ${c.accelerator === "gpu" ? "GPU memory" : "memory"}${c.numCpus ? ` · ${c.numCpus} vCPU` : ""}</span>
          <span><strong>${price(c.pricePerHour)}</strong> · quota left ${Math.max(left, 0)} of ${c.quota.maxAccelerators}</span>
          <span class="tile-flags">
            ${fit && html`<span class="badge ${fit === "fits" ? "ok" : "bad"}">${fit}</span>`}
            ${c.id === recommended && html`<span class="badge ok recommended-badge">recommended</span>`}
            ${left < c.numAccelerators && html`<span class="badge bad">over quota</span>`}
          </span>
        </label>`;
      })}
    </div>
    <${FieldError} errors=${errors} slot="compute" />
  </fieldset>`;
}

function Catalog({ onPick }) {
  const [open, setOpen] = useState(false);
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const [search, setSearch] = useState("");
  useEffect(() => {
    if (!open) return;
    const timer = setTimeout(() => {
      setError(null);
      get(`/api/v1/catalog/list${search ? "?search=" + encodeURIComponent(search) : ""}`).then(
        (d) => setItems(d.items),
        setError,
      );
    }, 200);
    return () => clearTimeout(timer);
  }, [open, search]);
  return html`<details class="panel create-catalog" onToggle=${(e) => setOpen(e.target.open)}>
    <summary>Deploy from catalog</summary>
    <p class="help">Tested recipes: picking one fills the form below, which you can still change.</p>
    <label class="inline">Search the catalog <input type="search" value=${search} onInput=${(e) => setSearch(e.target.value)} /></label>
    <${ErrorBanner} error=${error} />
    ${open && items === null && !error && html`<${Waiting}>Loading the catalog…<//>`}
    ${items && items.length === 0 && html`<p class="empty">No catalog model matches.</p>`}
    ${items &&
    html`<ul class="create-catalog-list">
      ${items.map(
        (m) => html`<li key=${m.repoId}>
          <div><strong>${m.repoId}</strong> <span class="muted">${m.task} · ${m.license}</span></div>
          <div class="create-recipes">
            ${m.recipes.map(
              (r) => html`<button type="button" class="small" data-recipe=${r.publicId} onClick=${() => onPick(m, r)}>
                Use ${r.accelerator} · ${r.engineType}${r.ggufFile ? ` · ${r.ggufFile}` : ""}
              </button>`,
            )}
          </div>
        </li>`,
      )}
    </ul>`}
  </details>`;
}

function emptyForm(namespace) {
  return {
    namespace,
    name: "",
    repository: "",
    revision: "",
    task: "",
    engine: "huggingface",
    imageUrl: "",
    ggufFile: "",
    hardware: "",
    minReplica: "1",
    maxReplica: "1",
    scaleToZero: "",
    measure: "",
    threshold: "",
    type: "private",
    env: [],
    secrets: [],
    options: [],
    tags: "",
  };
}

/** The rows a choice may fall on: the recipe's pins (accelerator, vendor, region, type, size). */
function admits(pins, c) {
  if (!pins) return true;
  return Object.entries(pins).every(([key, value]) => value == null || c[key] === value);
}

// app.js's Lazy may render this screen once with another screen's props while that one loads: no namespaces then.
export function CreateEndpoint({ me, namespaces = [me.name] }) {
  const [form, setForm] = useState(() => emptyForm(me.name));
  const [touched] = useState(() => new Set()); // fields the user chose: suggestions leave them alone
  const [pins, setPins] = useState(null);
  const [rows, setRows] = useState(null);
  const [rowsError, setRowsError] = useState(null);
  const [lookup, setLookup] = useState({ status: "idle" });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [filled, setFilled] = useState(null);
  const lookupSeq = useRef(0);
  const set = (key, value, byUser = true) => {
    if (byUser) touched.add(key);
    setForm((f) => ({ ...f, [key]: value }));
  };

  useEffect(() => {
    setRows(null);
    setRowsError(null);
    get(`/v2/provider/${encodeURIComponent(form.namespace)}`).then(
      (d) =>
        setRows(
          d.vendors.flatMap((v) => v.regions.flatMap((r) => r.computes.map((c) => ({ ...c, vendor: v.name, region: r.name })))),
        ),
      setRowsError,
    );
  }, [form.namespace]);

  useEffect(() => {
    const reference = form.repository.trim();
    const seq = ++lookupSeq.current;
    if (!reference || !reference.includes("/")) {
      setLookup({ status: "idle" });
      return;
    }
    setLookup({ status: "loading" });
    const timer = setTimeout(async () => {
      const repository = form.revision.trim() ? `${reference}@${form.revision.trim()}` : reference;
      const params = new URLSearchParams({ repository, namespace: form.namespace });
      try {
        const data = await get(`/v2/recommendation?${params}`);
        if (seq === lookupSeq.current) setLookup({ status: "ok", data });
      } catch (failure) {
        if (seq === lookupSeq.current) setLookup({ status: "error", error: failure });
      }
    }, 400);
    return () => clearTimeout(timer);
  }, [form.repository, form.revision, form.namespace]);

  // Suggestions: fill what the user has not chosen.
  useEffect(() => {
    if (lookup.status !== "ok") return;
    const d = lookup.data;
    setForm((f) => ({
      ...f,
      task: touched.has("task") ? f.task : d.task || "",
      engine: touched.has("engine") || !d.engine ? f.engine : d.engine,
    }));
  }, [lookup]);

  useEffect(() => {
    if (!rows || touched.has("hardware")) return;
    const usable = rows.filter((c) => !UNUSABLE.has(c.status) && admits(pins, c));
    const fitting = lookup.status === "ok" ? lookup.data.items.filter((c) => admits(pins, c)).map((c) => c.id) : [];
    const known = new Set(rows.map((c) => c.id));
    const pick = fitting.find((id) => known.has(id)) || [...usable].sort((a, b) => a.pricePerHour - b.pricePerHour)[0]?.id;
    if (pick) setForm((f) => ({ ...f, hardware: pick }));
  }, [rows, lookup, pins]);

  const compute = rows?.find((c) => c.id === form.hardware) || null;
  const shown = useMemo(() => buildBody(form, compute, { masked: true }), [form, compute]);
  const errors = useMemo(() => placeErrors(error), [error]);

  const pick = (model, recipe) => {
    touched.clear();
    touched.add("task");
    touched.add("engine");
    const s = recipe.scaling || {};
    setPins({ accelerator: recipe.accelerator, ...(recipe.hardware || {}) });
    setForm((f) => ({
      ...emptyForm(f.namespace),
      name: `${slug(model.modelName || model.repoId.split("/").pop())}-${suffix()}`,
      repository: model.repoId,
      revision: recipe.revision || "",
      task: model.task || "",
      engine: CATALOG_ENGINES[recipe.engineType] || "huggingface",
      ggufFile: recipe.ggufFile || "",
      type: recipe.type || "private",
      minReplica: String(s.minReplica ?? 1),
      maxReplica: String(s.maxReplica ?? 1),
      scaleToZero: s.scaleToZeroTimeout == null ? "" : String(s.scaleToZeroTimeout),
      env: rowsOf(recipe.env),
      options: rowsOf(recipe.options),
    }));
    setError(null);
    setFilled(`${model.repoId}, recipe ${recipe.publicId}`);
    document.getElementById("f-name")?.focus();
  };

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body = buildBody(form, compute);
    try {
      const { data } = await call("POST", `/v2/endpoint/${encodeURIComponent(form.namespace)}`, body);
      go("e", form.namespace, data.name, "overview");
    } catch (failure) {
      setError(failure instanceof ApiError ? failure : new ApiError(0, { error: String(failure) }));
      setBusy(false);
      requestAnimationFrame(() => document.getElementById("create-error")?.focus());
    }
  };

  const unplaced = (error?.fields || []).filter((f) => !slotOf(f.field));
  return html`<section aria-labelledby="create-title" class="create">
    <div class="toolbar"><h1 id="create-title">New endpoint</h1></div>
    <${Catalog} onPick=${pick} />
    ${filled && html`<p class="help" role="status">Filled from the catalog: ${filled}.</p>`}
    <div class="create-layout">
      <form class="create-form" onSubmit=${submit} novalidate aria-describedby=${error ? "create-error" : undefined}>
        ${error &&
        html`<div class="error" id="create-error" role="alert" tabindex="-1">
          <p>The endpoint was not created: ${error.message}</p>
          ${unplaced.length > 0 && html`<ul>${unplaced.map((f) => html`<li>${f.field}: ${f.message}</li>`)}</ul>`}
        </div>`}

        <fieldset>
          <legend>Model</legend>
          <label for="f-namespace">Namespace</label>
          <select id="f-namespace" value=${form.namespace} onChange=${(e) => set("namespace", e.target.value)}>
            ${namespaces.map((n) => html`<option value=${n}>${n}</option>`)}
          </select>
          <label for="f-repository">Model id (Hub)</label>
          <input
            id="f-repository"
            placeholder="org/model"
            autocomplete="off"
            spellcheck="false"
            value=${form.repository}
            onInput=${(e) => set("repository", e.target.value)}
            ...${described(errors, "model.repository", "lookup")}
          />
          <${FieldError} errors=${errors} slot="model.repository" />
          <${Lookup} lookup=${lookup} />
          <label for="f-revision">Revision <span class="muted">(branch, tag or commit; empty: the default branch)</span></label>
          <input
            id="f-revision"
            placeholder="main"
            autocomplete="off"
            value=${form.revision}
            onInput=${(e) => set("revision", e.target.value)}
            ...${described(errors, "model.revision")}
          />
          <${FieldError} errors=${errors} slot="model.revision" />
          <label for="f-name">Endpoint name</label>
          <input
            id="f-name"
            placeholder="my-endpoint"
            autocomplete="off"
            spellcheck="false"
            value=${form.name}
            onInput=${(e) => set("name", e.target.value)}
            ...${described(errors, "name", "help-name")}
          />
          <p class="help" id="help-name">1-32 lowercase letters, digits and '-'.</p>
          <${FieldError} errors=${errors} slot="name" />
          <label for="f-task">Task</label>
          <input id="f-task" list="tasks" value=${form.task} onInput=${(e) => set("task", e.target.value)} ...${described(errors, "model.task")} />
          <datalist id="tasks">${TASKS.map((t) => html`<option value=${t} />`)}</datalist>
          <${FieldError} errors=${errors} slot="model.task" />
          <label for="f-engine">Engine</label>
          <select id="f-engine" value=${form.engine} onChange=${(e) => set("engine", e.target.value)} ...${described(errors, "model.image")}>
            ${ENGINES.map(([value, label]) => html`<option value=${value}>${label}</option>`)}
          </select>
          ${form.engine === "llamacpp" &&
          html`<label for="f-gguf">GGUF file <span class="muted">(empty: Dais picks a 4-bit one)</span></label>
            <input
              id="f-gguf"
              autocomplete="off"
              placeholder=${lookup.status === "ok" && lookup.data.ggufFile ? lookup.data.ggufFile : "model-q4_k_m.gguf"}
              value=${form.ggufFile}
              onInput=${(e) => set("ggufFile", e.target.value)}
            />`}
          ${form.engine === "custom" &&
          html`<label for="f-image">Container image</label>
            <input
              id="f-image"
              placeholder="ghcr.io/org/app:1.0"
              autocomplete="off"
              value=${form.imageUrl}
              onInput=${(e) => set("imageUrl", e.target.value)}
            />`}
          <${FieldError} errors=${errors} slot="model.image" />
          <${FieldError} errors=${errors} slot="model.framework" />
        </fieldset>

        ${rowsError ? html`<${ErrorBanner} error=${rowsError} />` : html`<${HardwareTiles}
              rows=${rows}
              lookup=${lookup}
              selected=${form.hardware}
              onSelect=${(id) => set("hardware", id)}
              errors=${errors}
            />`}

        <fieldset id="scaling" class="create-scaling">
          <legend>Scaling</legend>
          <div class="create-pair">
            <div>
              <label for="f-min">Min replicas</label>
              <input id="f-min" type="number" inputmode="numeric" value=${form.minReplica} onInput=${(e) => set("minReplica", e.target.value)}
                ...${described(errors, ["compute.scaling.minReplica", "compute.scaling"])} />
              <${FieldError} errors=${errors} slot="compute.scaling.minReplica" />
            </div>
            <div>
              <label for="f-max">Max replicas</label>
              <input id="f-max" type="number" inputmode="numeric" value=${form.maxReplica} onInput=${(e) => set("maxReplica", e.target.value)}
                ...${described(errors, ["compute.scaling.maxReplica", "compute.scaling"])} />
              <${FieldError} errors=${errors} slot="compute.scaling.maxReplica" />
            </div>
          </div>
          <${FieldError} errors=${errors} slot="compute.scaling" />
          <label for="f-zero">Scale to zero after <span class="muted">(minutes idle; needs min 0; empty: never)</span></label>
          <input id="f-zero" type="number" inputmode="numeric" value=${form.scaleToZero} onInput=${(e) => set("scaleToZero", e.target.value)}
            ...${described(errors, "compute.scaling.scaleToZeroTimeout")} />
          <${FieldError} errors=${errors} slot="compute.scaling.scaleToZeroTimeout" />
          <div class="create-pair">
            <div>
              <label for="f-measure">Scale up on</label>
              <select id="f-measure" value=${form.measure} onChange=${(e) => set("measure", e.target.value)}>
                ${MEASURES.map(([value, label]) => html`<option value=${value}>${label}</option>`)}
              </select>
            </div>
            <div>
              <label for="f-threshold">Threshold</label>
              <input id="f-threshold" type="number" step="any" inputmode="decimal" disabled=${!form.measure}
                placeholder=${form.measure === "hardwareUsage" ? "80" : "1.5"} value=${form.threshold}
                onInput=${(e) => set("threshold", e.target.value)} ...${described(errors, "compute.scaling.measure")} />
            </div>
          </div>
          <${FieldError} errors=${errors} slot="compute.scaling.measure" />
        </fieldset>

        <fieldset>
          <legend>Access</legend>
          <label for="f-type">Who may call it</label>
          <select id="f-type" value=${form.type} onChange=${(e) => set("type", e.target.value)} ...${described(errors, "type")}>
            ${TYPES.map(([value, label]) => html`<option value=${value}>${label}</option>`)}
          </select>
          <${FieldError} errors=${errors} slot="type" />
          <label for="f-tags">Tags <span class="muted">(comma-separated)</span></label>
          <input id="f-tags" autocomplete="off" value=${form.tags} onInput=${(e) => set("tags", e.target.value)} ...${described(errors, "tags")} />
          <${FieldError} errors=${errors} slot="tags" />
        </fieldset>

        <${Rows} title="Environment variables" kind="env" rows=${form.env} onChange=${(v) => set("env", v)} errors=${errors} slot="model.env" />
        <${Rows}
          title="Secrets"
          kind="secret"
          rows=${form.secrets}
          onChange=${(v) => set("secrets", v)}
          errors=${errors}
          slot="model.secrets"
          help="Write-only: stored encrypted, given to the engine as environment variables, never shown again."
        />
        <${Rows}
          title="Engine options"
          kind="options"
          rows=${form.options}
          onChange=${(v) => set("options", v)}
          errors=${errors}
          slot="model.image.options"
          help="Knobs of the engine, sent under model.image (e.g. ctxSize 8192 for llama.cpp, maxBatchTokens for TEI)."
        />

        <div class="create-submit">
          <button type="submit" disabled=${busy}>Create endpoint</button>
          ${busy && html`<${Waiting}>Creating ${form.name || "the endpoint"}…<//>`}
        </div>
      </form>
      <${EquivalentRequest} namespace=${form.namespace} body=${shown} />
    </div>
  </section>`;
}
