// Sign-in: a token pasted here is kept in this browser until sign-out; it travels only in the Authorization
// header of the console's API calls.
import { session, ApiError } from "../api.js";
import { html, useState } from "../lib.js";

export function SignIn() {
  const [value, setValue] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const token = value.trim();
    try {
      const response = await fetch("/api/whoami-v2", { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new ApiError(response.status, body);
      }
      session.signIn(token);
    } catch (failure) {
      setError(failure.status === 401 ? "This token is unknown, expired or revoked." : failure.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <h1>Sign in to Dais</h1>
    <form onSubmit=${submit}>
      <label for="token">API token</label>
      <input
        id="token"
        name="token"
        type="password"
        autocomplete="off"
        required
        value=${value}
        onInput=${(e) => setValue(e.target.value)}
        aria-describedby="token-help ${error ? "token-error" : ""}"
      />
      ${error && html`<p id="token-error" class="field-error" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy}>${busy ? "Checking…" : "Sign in"}</button>
    </form>
    <div id="token-help" class="help">
      <p>
        <code>make serve</code> prints the admin token the first time it starts (<code>export DAIS_TOKEN=…</code>);
        or set <code>DAIS_ADMIN_TOKEN</code> before starting.
      </p>
      <p>An admin makes tokens for others with <code>dais tokens create --user NAME</code>, or on the Account page.</p>
    </div>
  </main>`;
}
