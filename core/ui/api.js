// Talking to the daemon's API (same origin), and small DOM helpers shared by the pages.

const TOKEN_KEY = "isolde.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// One API request: JSON back (null for 204), or the Response itself with {raw: true}.
// Errors (the API's {"error": {code, message}}) are thrown as ApiError.
export async function api(method, path, { body, type, raw } = {}) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  if (type) headers["Content-Type"] = type;
  let r;
  try {
    r = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new ApiError(0, "isolde.ui.offline", "the daemon does not answer (is isolde serve running?)");
  }
  if (!r.ok) {
    let err = { code: "http." + r.status, message: r.statusText };
    try {
      err = (await r.json()).error || err;
    } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, err.code, err.message);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

export const enc = encodeURIComponent;

// The API path of a workflow: its id may contain "/", each part is encoded.
export function wfPath(path) {
  return path.split("/").map(enc).join("/");
}

// h("tag.class#id", {attrs, on: {event: fn}}, ...children): a DOM element.
export function h(spec, attrs, ...children) {
  const [, tag, rest] = /^([a-z0-9]+)(.*)$/i.exec(spec);
  const el = tag === "svg" ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const m of rest.matchAll(/([.#])([\w-]+)/g)) {
    if (m[1] === ".") el.classList.add(m[2]);
    else el.id = m[2];
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// Replace el's children (null, false and nested arrays allowed, as in h()).
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function when(t) {
  if (t === null || t === undefined) return "";
  const d = new Date(t * 1000);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function duration(start, end) {
  if (start === null || start === undefined) return "";
  const s = (end ?? Date.now() / 1000) - start;
  if (s < 0.001) return "<1 ms";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function badge(status) {
  return h("span.badge", { dataset: { status: status || "unknown" } }, status || "unknown");
}

export function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

let toastTimer = 0;
export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.dataset.kind = kind;
  el.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("shown"), 5000);
}

// An error shown where the thing failed, with its code.
export function errorBox(e) {
  return h("p.error", { role: "alert" }, e.code ? h("code", e.code) : null, " ", e.message || String(e));
}

// Prev / next and "a–b of n" for a list of `total` rows shown `limit` at a time.
export function pager(offset, limit, total, go, labels = ["‹ prev", "next ›"]) {
  const last = Math.min(offset + limit, total);
  return h("div.pager",
    h("button", { type: "button", disabled: offset <= 0, on: { click: () => go(Math.max(0, offset - limit)) } }, labels[0]),
    h("span.range", total ? `${offset + 1}–${last} of ${total}` : "none"),
    h("button", { type: "button", disabled: last >= total, on: { click: () => go(offset + limit) } }, labels[1]));
}
