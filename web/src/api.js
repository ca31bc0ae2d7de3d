// The public HTTP API, the only way the UI reads or changes anything: what the UI does, a script
// can do. A bearer token from the login is kept in localStorage and sent with every call.

const TOKEN_KEY = "sandflow.token";

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API: `status`, and its `{code, message}` body (plus any extra fields). */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || "http_" + status;
    this.body = body || {};
  }
}

/** Listeners told when a call answers 401, so the app shows the login again. */
const onUnauthenticated = new Set();
export function whenUnauthenticated(listener) {
  onUnauthenticated.add(listener);
  return () => onUnauthenticated.delete(listener);
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

/**
 * One call: `method`, `path` (under the server, e.g. `/api/v1/dags`), a JSON `body` or raw bytes
 * with `contentType`. Answers the parsed JSON (or null), throws ApiError.
 */
export async function call(method, path, body, { contentType, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    if (contentType) {
      init.headers["Content-Type"] = contentType;
      init.body = body;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = { message: text };
    }
  }
  if (!response.ok) {
    if (response.status === 401) onUnauthenticated.forEach((l) => l());
    throw new ApiError(response.status, json);
  }
  return json;
}

export const get = (path, opts) => call("GET", path, undefined, opts);
export const post = (path, body, opts) => call("POST", path, body, opts);
export const put = (path, body, opts) => call("PUT", path, body, opts);
export const patch = (path, body, opts) => call("PATCH", path, body, opts);
export const del = (path, opts) => call("DELETE", path, undefined, opts);

/** `?a=1&b=2` from an object, leaving out null and undefined values; arrays repeat the key. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

/** `encodeURIComponent`, for ids in paths. */
export const enc = encodeURIComponent;

/** `fetch` of `path` with the token, for answers that are not JSON; an error answer throws. */
async function fetchRaw(path, signal) {
  const response = await fetch(path, { headers: headers({ Accept: "*/*" }), signal });
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {}
    if (response.status === 401) onUnauthenticated.forEach((l) => l());
    throw new ApiError(response.status, body);
  }
  return response;
}

/**
 * Downloads `path` (with the token, which a plain link cannot send) and saves it as `filename`
 * through an object URL.
 */
export async function download(path, filename) {
  const response = await fetchRaw(path);
  const url = URL.createObjectURL(await response.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * Reads a streamed response (fetch, so the token goes in a header, which EventSource cannot do)
 * and calls `onText(chunk)` as text arrives, until it ends or `signal` aborts. Answers when done.
 */
export async function streamText(path, onText, signal) {
  const response = await fetchRaw(path, signal);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
  onText(decoder.decode());
}

/**
 * Server-sent events of `path` (`/api/v1/events?dag_id=`, `/api/v1/runs/{id}/events`): calls
 * `onEvent(name, data)` for each, reconnecting after a dropped connection (not after `signal`
 * aborts or the server ends a finite stream with `end`). Answers a function that stops it.
 */
export function events(path, onEvent, { reconnect = true } = {}) {
  const controller = new AbortController();
  let buffer = "";
  const parse = (chunk) => {
    buffer += chunk;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      let parsed = data.join("\n");
      try {
        parsed = JSON.parse(parsed);
      } catch {}
      onEvent(name, parsed);
    }
  };
  const run = async () => {
    for (let delay = 1000; !controller.signal.aborted; delay = Math.min(delay * 2, 15000)) {
      try {
        await streamText(path, parse, controller.signal);
        if (!reconnect) return;
        delay = 1000;
      } catch (e) {
        if (controller.signal.aborted || (e instanceof ApiError && e.status < 500)) return;
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  };
  run();
  return () => controller.abort();
}
