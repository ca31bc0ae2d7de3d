// Paths in the address bar, so every view has a link that can be shared and reloaded (the server
// answers index.html for every UI path). `navigate` pushes, `useRoute` re-renders on a change.
import { useEffect, useState } from "preact/hooks";

const listeners = new Set();

export function navigate(to, { replace = false } = {}) {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  listeners.forEach((l) => l());
}

window.addEventListener("popstate", () => listeners.forEach((l) => l()));

/** The current `{path, segments, params}`; re-renders its component when the location changes. */
export function useRoute() {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
  return currentRoute();
}

export function currentRoute() {
  const path = location.pathname;
  const segments = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { path, segments, params: new URLSearchParams(location.search) };
}

/** Sets (or, with null, removes) query parameters of the current location, without a new entry. */
export function setParams(changes, { replace = true } = {}) {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === "") params.delete(k);
    else params.set(k, String(v));
  }
  const s = params.toString();
  navigate(location.pathname + (s ? "?" + s : ""), { replace });
}

/** An `<a>` that navigates inside the app (a plain link for a new tab or a middle click). */
export function Link({ href, children, ...rest }) {
  const onClick = (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}
