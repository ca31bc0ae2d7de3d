// Live updates: one connection to the API's event stream (`GET /api/v1/events`) for the whole
// page, shared by every view that listens; views reload what an event touches, so nothing needs
// a page reload. Events: `run` {dag_id, run_id, state}, `task` {dag_id, run_id, task_id,
// map_index, state, try_number}, `lagged` (some were missed: reload everything).
import { useEffect, useRef } from "preact/hooks";
import { events } from "./api.js";

const listeners = new Set();
let stop = null;

function ensureConnected() {
  if (stop) return;
  stop = events("/api/v1/events", (name, data) => {
    listeners.forEach((l) => l(name, data));
  });
}

/** Closes the stream (at log out). */
export function disconnect() {
  stop?.();
  stop = null;
}

// A page left (or frozen in the back/forward cache) closes its stream: otherwise each one held a
// connection of the browser's six per server, and after a few page loads the API's answers
// queued behind them. A page shown again reconnects if anyone listens.
window.addEventListener("pagehide", disconnect);
window.addEventListener("pageshow", (e) => {
  if (e.persisted && listeners.size) ensureConnected();
});

/**
 * Calls `onEvent(name, data)` for every event for which `filter(name, data)` holds, while the
 * component is mounted.
 */
export function useLive(filter, onEvent) {
  const latest = useRef({ filter, onEvent });
  latest.current = { filter, onEvent };
  useEffect(() => {
    ensureConnected();
    const l = (name, data) => {
      const { filter, onEvent } = latest.current;
      if (name === "lagged" || !filter || filter(name, data)) onEvent(name, data);
    };
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
}
