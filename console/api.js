// The console's only way to the server: the public REST API, with the user's token in the Authorization header
// (never in a URL or a cookie the browser would send by itself, so no cross-site request can use it).
const KEY = "dais.token";
const listeners = new Set();

export const session = {
  token: () => localStorage.getItem(KEY),
  signIn(token) {
    localStorage.setItem(KEY, token);
    listeners.forEach((f) => f());
  },
  signOut() {
    localStorage.removeItem(KEY);
    listeners.forEach((f) => f());
  },
  onChange(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};

/** An error answer of the API: its message, its status and the fields it names. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.fields = body?.fields || [];
  }

  /** The message about one field (``model.repository``), or about a field under it. */
  about(field) {
    const found = this.fields.find((f) => f.field === field || f.field.startsWith(field + "."));
    return found ? found.message : null;
  }
}

function headers(extra = {}) {
  const token = session.token();
  return { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...extra };
}

/** One call; the parsed JSON answer (and its headers), or an ``ApiError``. A 401 signs out. */
export async function call(method, path, body, extraHeaders = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body === undefined ? extraHeaders : { "Content-Type": "application/json", ...extraHeaders }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, { error: `cannot reach the Dais API (${error.message}): is it running?` });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (response.status === 401 && session.token()) session.signOut();
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, headers: response.headers };
}

export const get = async (path) => (await call("GET", path)).data;

/**
 * Server-sent events of ``path`` through fetch (EventSource cannot send the Authorization header): calls
 * ``onEvent({id, event, data})`` for each, reconnecting with Last-Event-ID after a drop, until ``signal`` aborts.
 */
export async function follow(path, onEvent, { signal, onState = () => {} } = {}) {
  let lastId = null;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const response = await fetch(path, {
        headers: headers(lastId ? { "Last-Event-ID": lastId } : {}),
        signal,
      });
      if (response.status === 401 && session.token()) session.signOut();
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      onState("live");
      failures = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = { id: null, event: "message", data: "" };
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) event.id = line.slice(4);
            else if (line.startsWith("event: ")) event.event = line.slice(7);
            else if (line.startsWith("data: ")) event.data += line.slice(6);
          }
          if (!event.data) continue;
          if (event.id) lastId = event.id;
          onEvent({ ...event, data: JSON.parse(event.data) });
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
        onState("stopped", error);
        return;
      }
    }
    onState("reconnecting");
    failures += 1;
    await new Promise((resolve) => setTimeout(resolve, Math.min(30000, 500 * 2 ** failures)));
  }
}
