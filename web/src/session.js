// Who is logged in: `{name, role}` from `GET /api/v1/me`, and what their role lets them do (the
// UI hides what the role can't do; the API refuses it anyway).
import { useEffect, useState } from "preact/hooks";

const RANKS = { viewer: 0, author: 1, operator: 2, admin: 3 };
let current = null;
const listeners = new Set();

export function setSession(me) {
  current = me;
  listeners.forEach((l) => l(me));
}

export function session() {
  return current;
}

export function useSession() {
  const [me, setMe] = useState(current);
  useEffect(() => {
    listeners.add(setMe);
    return () => listeners.delete(setMe);
  }, []);
  return me;
}

/** Whether the logged-in user's role is at least `role`. */
export function atLeast(role, me = current) {
  return !!me && (RANKS[me.role] ?? -1) >= RANKS[role];
}
