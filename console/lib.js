// The view layer every screen imports: Preact with htm templates (no build step), and small shared pieces.
import { h, render } from "./vendor/preact.module.js";
import { useCallback, useEffect, useMemo, useRef, useState } from "./vendor/hooks.module.js";
import htm from "./vendor/htm.module.js";

export const html = htm.bind(h);
export { render, useCallback, useEffect, useMemo, useRef, useState };

const UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];
const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

/** "3 minutes ago", from an ISO time. */
export function ago(iso, now = Date.now()) {
  const seconds = (new Date(iso).getTime() - now) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

/** The exact UTC time, as shown on hover. */
export function utc(iso) {
  return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** A relative time, with the exact UTC time on hover (and for screen readers, the datetime attribute). */
export function Time({ iso, empty = "never" }) {
  if (!iso) return html`<span class="muted">${empty}</span>`;
  return html`<time datetime=${iso} title=${utc(iso)}>${ago(iso)}</time>`;
}

const STATE_TONE = {
  running: "ok",
  scaledToZero: "idle",
  paused: "idle",
  pending: "busy",
  initializing: "busy",
  updating: "busy",
  failed: "bad",
  updateFailed: "bad",
};

/** The endpoint's state as a badge; its message on hover and to screen readers. */
export function StateBadge({ state, message }) {
  return html`<span class="badge ${STATE_TONE[state] || "busy"}" title=${message || state} aria-label=${`${state}: ${message || ""}`}
    >${state}</span
  >`;
}

/** A button that copies ``text`` and says so. */
export function CopyButton({ text, label = "Copy" }) {
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
  return html`<button type="button" class="small" onClick=${copy} aria-label=${`${label}: ${text}`}>${done ? "Copied" : label}</button>`;
}

/** A spinner with words: every wait says what it waits for. */
export function Waiting({ children }) {
  return html`<p class="waiting" role="status"><span class="spinner" aria-hidden="true"></span>${children}</p>`;
}

/** An API error as a banner (field errors are shown next to their fields by the forms). */
export function ErrorBanner({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message || String(error)}</p>`;
}

/** ``#/a/b`` → ["a", "b"]. */
export function route() {
  return location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
}

export function go(...parts) {
  location.hash = "#/" + parts.map(encodeURIComponent).join("/");
}
