// The playground tab: call the endpoint through the gateway, as any client would (its URL, the user's token in
// the Authorization header), matched to its task: chat or text completion (streamed: tokens show as they
// arrive) or embeddings. The same call is shown as curl and as the OpenAI Python client, to copy.
import { session } from "../../api.js";
import { ErrorBanner, Waiting, html, useEffect, useRef, useState } from "../../lib.js";

const EMBEDDINGS = new Set(["feature-extraction", "sentence-embeddings", "sentence-similarity"]);
const CHAT = new Set(["text-generation", "conversational", "image-text-to-text"]);
const COMPLETION = new Set(["text-generation", "text2text-generation"]);
const WAKE_SECONDS = 300; // a request to an endpoint at zero waits this long for a replica (X-Scale-Up-Timeout)

/** The modes the playground offers for a task, best first. */
export function modesFor(task) {
  const modes = [];
  if (CHAT.has(task)) modes.push("chat");
  if (COMPLETION.has(task)) modes.push("completion");
  if (EMBEDDINGS.has(task)) modes.push("embeddings");
  return modes;
}

const LABELS = { chat: "Chat", completion: "Text completion", embeddings: "Embeddings" };
const ROUTES = { chat: "/v1/chat/completions", completion: "/v1/completions", embeddings: "/v1/embeddings" };

/** An error answer of the gateway ({"error": "..."}) or of an engine ({"error": {"message": ...}}). */
async function failure(response) {
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    const said = typeof body.error === "string" ? body.error : body.error?.message || body.message || body.detail;
    if (said) message = String(said);
  } catch {
    // not JSON: the status says enough
  }
  const retry = response.headers.get("Retry-After");
  return new Error(`${message}${retry ? ` (retry in about ${retry} s)` : ""}`);
}

function unreachable(url, error) {
  const origin = new URL(url).origin;
  return new Error(
    `cannot reach the gateway at ${origin} (${error.message}): is it running, and does it let this page call it ` +
      "(DAIS_GATEWAY__CORS_ORIGINS)?",
  );
}

/** POSTs ``body`` to the endpoint; the answer, or an Error that says why not. */
async function post(url, body, signal) {
  const token = session.token();
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "X-Scale-Up-Timeout": String(WAKE_SECONDS),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify(body),
      signal,
    });
    if (!response.ok) throw await failure(response);
    return response;
  } catch (error) {
    if (error.name === "AbortError" || !(error instanceof TypeError)) throw error;
    throw unreachable(url, error);
  }
}

/** Reads an OpenAI server-sent event stream: ``onChunk(json)`` for each ``data:`` event until ``[DONE]``. */
async function readEvents(response, onChunk) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(typeof chunk.error === "string" ? chunk.error : chunk.error.message);
      onChunk(chunk);
    }
  }
}

const py = (value) => JSON.stringify(value); // a JSON string or list of plain objects is a Python literal too
const shell = (text) => `'${text.replace(/'/g, `'\\''`)}'`;

/** The same call as curl and as the OpenAI Python client. */
export function snippets(mode, url, body) {
  const curl = [
    `curl -N ${url}${ROUTES[mode]} \\`,
    `  -H "Authorization: Bearer $DAIS_TOKEN" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -H "X-Scale-Up-Timeout: ${WAKE_SECONDS}" \\`,
    `  -d ${shell(JSON.stringify(body))}`,
  ].join("\n");
  const client = [
    "import os",
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(`,
    `    base_url=${py(`${url}/v1`)},`,
    `    api_key=os.environ["DAIS_TOKEN"],`,
    `    default_headers={"X-Scale-Up-Timeout": "${WAKE_SECONDS}"},  # wait for a replica when at zero`,
    `)`,
  ];
  if (mode === "chat") {
    client.push(
      "stream = client.chat.completions.create(",
      `    model=${py(body.model)},`,
      "    messages=[",
      ...body.messages.map((m) => `        ${JSON.stringify(m).replace('{"role":', '{"role": ').replace(',"content":', ', "content": ')},`),
      "    ],",
      `    max_tokens=${body.max_tokens},`,
      `    temperature=${body.temperature},`,
      "    stream=True,",
      ")",
      "for chunk in stream:",
      `    if chunk.choices:`,
      `        print(chunk.choices[0].delta.content or "", end="", flush=True)`,
    );
  } else if (mode === "completion") {
    client.push(
      "stream = client.completions.create(",
      `    model=${py(body.model)},`,
      `    prompt=${py(body.prompt)},`,
      `    max_tokens=${body.max_tokens},`,
      `    temperature=${body.temperature},`,
      "    stream=True,",
      ")",
      "for chunk in stream:",
      `    if chunk.choices:`,
      `        print(chunk.choices[0].text, end="", flush=True)`,
    );
  } else {
    client.push(
      `answer = client.embeddings.create(model=${py(body.model)}, input=${py(body.input)})`,
      "vector = answer.data[0].embedding",
      "print(len(vector), vector[:8])",
    );
  }
  return { curl, python: client.join("\n") };
}

/** Copies a snippet; says so (the lib's CopyButton names its whole text to screen readers: too long here). */
function CopySnippet({ text, label }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone(true);
      setTimeout(() => setDone(false), 1500);
    } catch {
      setDone(false);
    }
  };
  return html`<button type="button" class="small" onClick=${copy}>${done ? "Copied" : label}</button>`;
}

function Snippets({ mode, url, body }) {
  const { curl, python } = snippets(mode, url, body);
  return html`<section class="snippets" aria-labelledby="snippet-title">
    <h3 id="snippet-title">The same call in code</h3>
    <p class="help">With your token in <code>DAIS_TOKEN</code> (never shown here).</p>
    <div class="snippet">
      <div class="snippet-head"><span>curl</span><${CopySnippet} text=${curl} label="Copy curl" /></div>
      <pre aria-label="curl"><code>${curl}</code></pre>
    </div>
    <div class="snippet">
      <div class="snippet-head"><span>Python (openai)</span><${CopySnippet} text=${python} label="Copy Python" /></div>
      <pre aria-label="Python"><code>${python}</code></pre>
    </div>
  </section>`;
}

function Parameters({ params, setParams }) {
  const set = (key) => (event) => setParams({ ...params, [key]: event.target.value });
  return html`<div class="fields">
    <div>
      <label for="pg-max-tokens">Max new tokens</label>
      <input id="pg-max-tokens" type="number" min="1" max="4096" inputmode="numeric" value=${params.maxTokens} onInput=${set("maxTokens")} />
    </div>
    <div>
      <label for="pg-temperature">Temperature</label>
      <input id="pg-temperature" type="number" min="0" max="2" step="0.1" value=${params.temperature} onInput=${set("temperature")} />
    </div>
  </div>`;
}

const numberOr = (text, fallback) => (Number.isFinite(Number(text)) && String(text).trim() !== "" ? Number(text) : fallback);

function Chat({ url, model, waking }) {
  const [messages, setMessages] = useState([]); // {role, content, chunks} of the conversation so far
  const [draft, setDraft] = useState("");
  const [system, setSystem] = useState("");
  const [params, setParams] = useState({ maxTokens: "128", temperature: "0.7" });
  const [reply, setReply] = useState(null); // the answer streaming in: {text, chunks}
  const [sent, setSent] = useState(null); // the body of the last call, for the snippet
  const [error, setError] = useState(null);
  const stop = useRef(null);
  useEffect(() => () => stop.current?.abort(), []);

  const conversation = (next) => [
    ...(system.trim() ? [{ role: "system", content: system }] : []),
    ...next.map(({ role, content }) => ({ role, content })),
  ];
  const bodyFor = (next) => ({
    model,
    messages: conversation(next),
    max_tokens: numberOr(params.maxTokens, 128),
    temperature: numberOr(params.temperature, 0.7),
    stream: true,
  });

  const send = async (event) => {
    event.preventDefault();
    if (!draft.trim() || reply) return;
    const next = [...messages, { role: "user", content: draft }];
    setMessages(next);
    setDraft("");
    setError(null);
    const controller = (stop.current = new AbortController());
    let text = "";
    let chunks = 0;
    setReply({ text, chunks });
    const body = bodyFor(next);
    setSent(body);
    try {
      const response = await post(url + ROUTES.chat, body, controller.signal);
      await readEvents(response, (chunk) => {
        const piece = chunk.choices?.[0]?.delta?.content;
        if (!piece) return;
        text += piece;
        chunks += 1;
        setReply({ text, chunks });
      });
    } catch (failed) {
      if (failed.name !== "AbortError") setError(failed);
    } finally {
      if (text) setMessages([...next, { role: "assistant", content: text, chunks }]);
      setReply(null);
      stop.current = null;
    }
  };

  // The snippet: the call the draft would make, else the last call made, else an example.
  const example = draft.trim() ? bodyFor([...messages, { role: "user", content: draft }]) : sent || bodyFor([{ role: "user", content: "Hello!" }]);
  return html`<div class="playground-chat">
    <ol class="chat" aria-label="Conversation" aria-live="polite">
      ${messages.map(
        (m, i) =>
          html`<li class=${`msg ${m.role}`} key=${i} data-chunks=${m.chunks}>
            <span class="who">${m.role === "user" ? "You" : "Model"}</span>
            <div class="text">${m.content}</div>
          </li>`,
      )}
      ${reply &&
      html`<li class="msg assistant streaming" data-chunks=${reply.chunks}>
        <span class="who">Model</span>
        ${reply.text
          ? html`<div class="text">${reply.text}</div>`
          : html`<${Waiting}>${waking ? `Waking the endpoint: waiting for a replica (up to ${WAKE_SECONDS / 60} minutes)…` : "Waiting for the first token…"}<//>`}
      </li>`}
    </ol>
    <${ErrorBanner} error=${error} />
    <form onSubmit=${send}>
      <label for="pg-message">Message</label>
      <textarea
        id="pg-message"
        rows="3"
        value=${draft}
        onInput=${(e) => setDraft(e.target.value)}
        onKeyDown=${(e) => e.key === "Enter" && (e.ctrlKey || e.metaKey) && send(e)}
        placeholder="Ask something (Ctrl+Enter sends)"
      ></textarea>
      <div class="actions">
        <button type="submit" disabled=${!!reply || !draft.trim()}>Send</button>
        ${reply && html`<button type="button" class="secondary" onClick=${() => stop.current?.abort()}>Stop</button>`}
        <button type="button" class="secondary" disabled=${!!reply || messages.length === 0} onClick=${() => { setMessages([]); setSent(null); }}>Clear</button>
      </div>
      <details class="params">
        <summary>Parameters</summary>
        <label for="pg-system">System prompt (optional)</label>
        <textarea id="pg-system" rows="2" value=${system} onInput=${(e) => setSystem(e.target.value)}></textarea>
        <${Parameters} params=${params} setParams=${setParams} />
      </details>
    </form>
    <${Snippets} mode="chat" url=${url} body=${example} />
  </div>`;
}

function Completion({ url, model, waking }) {
  const [prompt, setPrompt] = useState("Once upon a time");
  const [params, setParams] = useState({ maxTokens: "64", temperature: "0.7" });
  const [output, setOutput] = useState(null); // {prompt, text, chunks, done}
  const [error, setError] = useState(null);
  const stop = useRef(null);
  useEffect(() => () => stop.current?.abort(), []);
  const body = {
    model,
    prompt,
    max_tokens: numberOr(params.maxTokens, 64),
    temperature: numberOr(params.temperature, 0.7),
    stream: true,
  };

  const run = async (event) => {
    event.preventDefault();
    if (output && !output.done) return;
    setError(null);
    const controller = (stop.current = new AbortController());
    const asked = prompt;
    let text = "";
    let chunks = 0;
    setOutput({ prompt: asked, text, chunks, done: false });
    try {
      const response = await post(url + ROUTES.completion, { ...body, prompt: asked }, controller.signal);
      await readEvents(response, (chunk) => {
        const piece = chunk.choices?.[0]?.text;
        if (!piece) return;
        text += piece;
        chunks += 1;
        setOutput({ prompt: asked, text, chunks, done: false });
      });
    } catch (failed) {
      if (failed.name !== "AbortError") setError(failed);
    } finally {
      setOutput({ prompt: asked, text, chunks, done: true });
      stop.current = null;
    }
  };

  const streaming = output && !output.done;
  return html`<div class="playground-completion">
    <form onSubmit=${run}>
      <label for="pg-prompt">Prompt</label>
      <textarea id="pg-prompt" rows="4" value=${prompt} onInput=${(e) => setPrompt(e.target.value)}></textarea>
      <${Parameters} params=${params} setParams=${setParams} />
      <div class="actions">
        <button type="submit" disabled=${streaming || !prompt}>Generate</button>
        ${streaming && html`<button type="button" class="secondary" onClick=${() => stop.current?.abort()}>Stop</button>`}
      </div>
    </form>
    <${ErrorBanner} error=${error} />
    ${output &&
    html`<div class="completion" aria-live="polite" data-chunks=${output.chunks}>
      <span class="muted">${output.prompt}</span><span class="generated">${output.text}</span>
      ${streaming && !output.text && html`<${Waiting}>${waking ? "Waking the endpoint: waiting for a replica…" : "Waiting for the first token…"}<//>`}
    </div>`}
    <${Snippets} mode="completion" url=${url} body=${body} />
  </div>`;
}

function Embeddings({ url, model, waking }) {
  const [input, setInput] = useState("Dais serves models on your own hardware.");
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const body = { model, input };

  const run = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await (await post(url + ROUTES.embeddings, body)).json();
      const vector = answer.data?.[0]?.embedding;
      if (!Array.isArray(vector)) throw new Error("the answer holds no embedding");
      setResult({ length: vector.length, head: vector.slice(0, 8), tokens: answer.usage?.prompt_tokens });
    } catch (failed) {
      setError(failed);
    } finally {
      setBusy(false);
    }
  };

  return html`<div class="playground-embeddings">
    <form onSubmit=${run}>
      <label for="pg-input">Text to embed</label>
      <textarea id="pg-input" rows="3" value=${input} onInput=${(e) => setInput(e.target.value)}></textarea>
      <div class="actions"><button type="submit" disabled=${busy || !input}>Embed</button></div>
    </form>
    ${busy && html`<${Waiting}>${waking ? "Waking the endpoint: waiting for a replica…" : "Embedding…"}<//>`}
    <${ErrorBanner} error=${error} />
    ${result &&
    html`<div class="embedding" role="status">
      <p>A vector of <strong>${result.length}</strong> dimensions${result.tokens ? ` (${result.tokens} tokens in)` : ""}; the first values:</p>
      <code class="wrap">[${result.head.map((v) => v.toFixed(4)).join(", ")}${result.length > 8 ? ", …" : ""}]</code>
    </div>`}
    <${Snippets} mode="embeddings" url=${url} body=${body} />
  </div>`;
}

const VIEWS = { chat: Chat, completion: Completion, embeddings: Embeddings };

export function Tab({ endpoint }) {
  const task = endpoint.model?.task || "";
  const modes = modesFor(task);
  const [mode, setMode] = useState(modes[0]);
  const url = endpoint.status.url;
  const state = endpoint.status.state;
  if (!url) {
    return html`<p class="empty">This endpoint has no URL yet: it gets one once it runs. The Overview tab shows its progress.</p>`;
  }
  if (!modes.length) {
    return html`<div>
      <p class="empty">The playground does not speak the task <code>${task || "unknown"}</code> yet. Call the endpoint at its URL:</p>
      <pre><code>curl ${url}/ -H "Authorization: Bearer $DAIS_TOKEN" -H "Content-Type: application/json" -d '{"inputs": "…"}'</code></pre>
    </div>`;
  }
  const View = VIEWS[mode] || VIEWS[modes[0]];
  const model = endpoint.model.repository;
  return html`<section class="playground" aria-labelledby="playground-title">
    <div class="toolbar">
      <h2 id="playground-title">Playground</h2>
      ${modes.length > 1 &&
      html`<fieldset class="modes">
        <legend class="sr-only">Mode</legend>
        ${modes.map(
          (m) => html`<label class="inline"
            ><input type="radio" name="pg-mode" value=${m} checked=${m === mode} onChange=${() => setMode(m)} /> ${LABELS[m]}</label
          >`,
        )}
      </fieldset>`}
    </div>
    <p class="help">
      Calls <code class="wrap">${url}${ROUTES[mode]}</code> with your token, as any client would.
      ${state === "paused" && html`<strong> It is paused: resume it on the Overview tab first.</strong>`}
    </p>
    <${View} key=${mode} url=${url} model=${model} waking=${state !== "running"} />
  </section>`;
}
