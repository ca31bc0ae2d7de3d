// The pieces every view shares: states shown by colour AND shape AND label, tooltips that stay while
// hovered or focused, a confirmation that says what will happen, loading and error states.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

/** Every run and task state: its symbol (so colour is never the only signal) and its words. */
export const STATES = {
  none: { symbol: "·", label: "no status" },
  scheduled: { symbol: "○", label: "scheduled" },
  queued: { symbol: "◔", label: "queued" },
  running: { symbol: "▶", label: "running" },
  success: { symbol: "✓", label: "success" },
  failed: { symbol: "✕", label: "failed" },
  up_for_retry: { symbol: "↻", label: "up for retry" },
  up_for_reschedule: { symbol: "◷", label: "up for reschedule" },
  skipped: { symbol: "⤼", label: "skipped" },
  upstream_failed: { symbol: "⚠", label: "upstream failed" },
  removed: { symbol: "⌫", label: "removed" },
};

export function stateInfo(state) {
  return STATES[state || "none"] || { symbol: "?", label: String(state) };
}

/** A state as a coloured pill with its symbol and name. */
export function StateBadge({ state, compact = false }) {
  const info = stateInfo(state);
  return (
    <span class={`state state-${state || "none"}`} data-state={state || "none"}>
      <span class="state-symbol" aria-hidden="true">
        {info.symbol}
      </span>
      {compact ? <span class="visually-hidden">{info.label}</span> : <span class="state-label">{info.label}</span>}
    </span>
  );
}

/**
 * A square of a state (the DAG list's last runs, the grid's cells) with its symbol inside and a
 * tooltip; a button when `onClick` is given.
 */
export function StateSquare({ state, tip, onClick, selected, ...rest }) {
  const info = stateInfo(state);
  const cls = `square state-${state || "none"}${selected ? " selected" : ""}`;
  const label = tip || info.label;
  if (onClick)
    return (
      <button type="button" class={cls} data-tip={label} aria-label={label} data-state={state || "none"} onClick={onClick} {...rest}>
        <span aria-hidden="true">{info.symbol}</span>
      </button>
    );
  return (
    <span class={cls} data-tip={label} aria-label={label} role="img" tabIndex={0} data-state={state || "none"} {...rest}>
      <span aria-hidden="true">{info.symbol}</span>
    </span>
  );
}

/**
 * A button with a tooltip (CSS, from `data-tip`: it stays while the pointer or the focus is on
 * it, unlike the browser's `title`) and the same words for screen readers.
 */
export function Button({ tip, label, children, class: cls = "", danger, primary, ...rest }) {
  const classes = ["btn", cls, danger ? "btn-danger" : "", primary ? "btn-primary" : ""].filter(Boolean).join(" ");
  return (
    <button type="button" class={classes} data-tip={tip} aria-label={label || tip} {...rest}>
      {children}
    </button>
  );
}

/** Text with a tooltip. */
export function Tip({ tip, children, class: cls = "" }) {
  return (
    <span class={`has-tip ${cls}`} data-tip={tip} tabIndex={0}>
      {children}
    </span>
  );
}

/** A modal dialog; Escape or the close button calls `onClose`; focus moves into it. */
export function Modal({ title, onClose, children, wide, id }) {
  const ref = useRef(null);
  useEffect(() => {
    const previous = document.activeElement;
    const first = ref.current?.querySelector("[autofocus], input, textarea, select, button.btn-primary, button");
    first?.focus();
    const onKey = (e) => {
      if (e.key === "Escape") onClose?.();
    };
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      previous?.focus?.();
    };
  }, []);
  return (
    <div class="modal-backdrop" onClick={(e) => e.target === e.currentTarget && onClose?.()}>
      <div class={`modal${wide ? " modal-wide" : ""}`} role="dialog" aria-modal="true" aria-label={title} ref={ref} id={id}>
        <header class="modal-head">
          <h2>{title}</h2>
          <Button class="btn-icon modal-close" tip="Close (Esc)" onClick={onClose}>
            ✕
          </Button>
        </header>
        <div class="modal-body">{children}</div>
      </div>
    </div>
  );
}

let showConfirm = null;

/**
 * Asks before a change: `await confirm({title, body, action, danger})` is true when the user
 * pressed the action's button. `body` says what will happen.
 */
export function confirm(question) {
  return new Promise((resolve) => showConfirm({ ...question, resolve }));
}

/** Where `confirm` shows its dialog: once, at the top of the app. */
export function ConfirmHost() {
  const [question, setQuestion] = useState(null);
  showConfirm = setQuestion;
  if (!question) return null;
  const answer = (yes) => {
    setQuestion(null);
    question.resolve(yes);
  };
  return (
    <Modal title={question.title} onClose={() => answer(false)} id="confirm">
      <div class="confirm-body">{question.body}</div>
      <footer class="modal-foot">
        <Button onClick={() => answer(false)} tip="Do nothing" id="confirm-cancel">
          Cancel
        </Button>
        <Button primary danger={question.danger} onClick={() => answer(true)} tip={question.action} id="confirm-ok" autofocus>
          {question.action}
        </Button>
      </footer>
    </Modal>
  );
}

let pushToast = null;

/** A short message in the corner: what just happened, or what went wrong. */
export function toast(text, kind = "info") {
  pushToast?.({ text, kind, id: Math.random() });
}

export function ToastHost() {
  const [items, setItems] = useState([]);
  pushToast = (t) => {
    setItems((xs) => [...xs, t]);
    setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== t.id)), t.kind === "error" ? 8000 : 4000);
  };
  return (
    <div class="toasts" role="status" aria-live="polite">
      {items.map((t) => (
        <div class={`toast toast-${t.kind}`} key={t.id}>
          {t.text}
        </div>
      ))}
    </div>
  );
}

/**
 * Loads `load()` now and whenever `deps` change; `reload()` loads again without blanking what is
 * shown. Answers `{data, error, loading, reload}`.
 */
export function useAsync(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const run = useCallback(async (blank) => {
    const mine = ++generation.current;
    if (blank) setState({ data: null, error: null, loading: true });
    try {
      const data = await load();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    run(true);
  }, [run]);
  return { ...state, reload: () => run(false) };
}

/** Calls `fn` at most once per `ms`, the last call winning (for bursts of live events). */
export function useThrottled(fn, ms) {
  const timer = useRef(null);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      latest.current();
    }, ms);
  }, [ms]);
}

/** What an API error says, with its diagnostics when it has some. */
export function ErrorBox({ error }) {
  if (!error) return null;
  const diagnostics = error.body?.diagnostics;
  return (
    <div class="error-box" role="alert">
      <strong>{error.message}</strong>
      {error.code ? <span class="error-code"> ({error.code})</span> : null}
      {Array.isArray(diagnostics) && diagnostics.length ? (
        <ul class="diagnostics">
          {diagnostics.map((d, i) => (
            <li key={i}>{typeof d === "string" ? d : JSON.stringify(d)}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

export function Loading({ what = "Loading" }) {
  return (
    <div class="loading" aria-busy="true">
      {what}…
    </div>
  );
}

/** Tabs as links (each tab has its own address). */
export function Tabs({ tabs, current, hrefOf, Link }) {
  return (
    <nav class="tabs" role="tablist">
      {tabs.map(([key, label, tip]) => (
        <Link key={key} href={hrefOf(key)} class={`tab${key === current ? " active" : ""}`} role="tab" aria-selected={key === current} data-tip={tip} id={`tab-${key}`}>
          {label}
        </Link>
      ))}
    </nav>
  );
}

/** Pretty JSON in a scrollable block (as text: nothing in it is ever markup). */
export function Json({ value }) {
  return <pre class="json">{value === undefined ? "–" : JSON.stringify(value, null, 2)}</pre>;
}
