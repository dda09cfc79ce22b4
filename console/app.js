// The console's shell: who is signed in, the header, and which screen the address names.
import { get, session } from "./api.js";
import { html, render, route, useEffect, useState, Waiting, ErrorBanner } from "./lib.js";
import { SignIn } from "./screens/signin.js";
import { EndpointList } from "./screens/list.js";

const SCREENS = {};

/** Screens in their own modules register here (create, endpoint page, account): loaded on first use. */
const LAZY = {
  new: () => import("./screens/create.js").then((m) => m.CreateEndpoint),
  e: () => import("./screens/endpoint.js").then((m) => m.EndpointPage),
  account: () => import("./screens/account.js").then((m) => m.Account),
};

function useRoute() {
  const [parts, setParts] = useState(route());
  useEffect(() => {
    const changed = () => setParts(route());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return parts;
}

function Lazy({ name, ...props }) {
  const [screen, setScreen] = useState(() => SCREENS[name]);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (SCREENS[name]) return setScreen(() => SCREENS[name]);
    LAZY[name]()
      .then((found) => {
        SCREENS[name] = found;
        setScreen(() => found);
      })
      .catch(setError);
  }, [name]);
  if (error) return html`<${ErrorBanner} error=${error} />`;
  if (!screen) return html`<${Waiting}>Loading…<//>`;
  const Screen = screen;
  return html`<${Screen} ...${props} />`;
}

function Header({ me }) {
  return html`<header class="top">
    <a class="brand" href="#/">Dais</a>
    <nav aria-label="Main">
      <a href="#/">Endpoints</a>
      <a href="#/new">New endpoint</a>
      <a href="#/account">Account</a>
    </nav>
    <span class="who">${me.name}</span>
    <button type="button" class="small" onClick=${() => session.signOut()}>Sign out</button>
  </header>`;
}

function App() {
  const [token, setToken] = useState(session.token());
  const [me, setMe] = useState(null);
  const [error, setError] = useState(null);
  const parts = useRoute();
  useEffect(() => session.onChange(() => setToken(session.token())), []);
  useEffect(() => {
    setMe(null);
    setError(null);
    if (!token) return;
    get("/api/whoami-v2").then(setMe, setError);
  }, [token]);
  if (!token) return html`<${SignIn} />`;
  if (error) return html`<main><${ErrorBanner} error=${error} /></main>`;
  if (!me) return html`<main><${Waiting}>Signing in…<//></main>`;
  const namespaces = [me.name, ...(me.orgs || []).map((o) => o.name)];
  const [first, ...rest] = parts;
  let screen;
  if (first === "e" && rest.length >= 2) {
    // Keyed by screen: moving between lazily loaded screens never renders one with the other's props.
    screen = html`<${Lazy} key="e" name="e" namespace=${rest[0]} name_=${rest[1]} tab=${rest[2] || "overview"} me=${me} />`;
  } else if (first === "new" || first === "account") {
    screen = html`<${Lazy} key=${first} name=${first} me=${me} namespaces=${namespaces} />`;
  } else {
    const namespace = first === "ns" && rest[0] ? rest[0] : me.name;
    screen = html`<${EndpointList} namespace=${namespace} namespaces=${namespaces} />`;
  }
  return html`<${Header} me=${me} /><main id="main">${screen}</main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the "Loading…" placeholder of index.html
render(html`<${App} />`, root);
