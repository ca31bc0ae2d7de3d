// The DAG list: every DAG with its owner, tags, schedule, next run and its last runs (one square a
// run, newest on the right, like the grid), filtered by search, tag, owner, last run state and
// paused; a pause toggle for operators and a trigger button for authors; the import errors of
// watched folders above. Filters live in the address (`?search=&tag=&owner=&state=&paused=`), so
// a filtered list can be linked. Everything updates live from the event stream.
import "./dag.css";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { enc, get, patch, query } from "../api.js";
import { Button, ErrorBox, Loading, StateSquare, Tip, toast, useAsync, useThrottled } from "../components.jsx";
import { ago, duration, secondsBetween, time } from "../format.js";
import { useLive } from "../live.js";
import { Link, navigate, setParams } from "../router.jsx";
import { atLeast, useSession } from "../session.js";
import { TriggerDialog } from "./trigger.jsx";

export const RUN_STATES = ["queued", "running", "success", "failed"];

/** A version id (a SHA-256 in hex) in a short form; the full id goes in a tooltip. */
export function shortVersion(v) {
  if (!v) return "–";
  return v.length > 12 ? v.slice(0, 10) : v;
}

/** A version id, short, with the full one in its tooltip. */
export function VersionTag({ version, active }) {
  if (!version) return <span class="muted">–</span>;
  return (
    <Tip tip={`Version ${version}${active ? " (active: the schedule uses it)" : ""}`} class="version-tag mono">
      {shortVersion(version)}
    </Tip>
  );
}

/** What a run's tooltip says: its id, state, type, start and duration. */
export function runTip(r) {
  const lines = [r.run_id, `state: ${r.state}`];
  if (r.run_type) lines.push(`type: ${r.run_type}${r.experiment ? `, experiment ${r.experiment}` : ""}`);
  if (r.logical_date) lines.push(`logical date: ${time(r.logical_date)}`);
  lines.push(`started: ${r.started_at ? time(r.started_at) : "not yet"}`);
  if (r.started_at) lines.push(`duration: ${duration(secondsBetween(r.started_at, r.ended_at))}${r.ended_at ? "" : " so far"}`);
  if (r.triggered_by) lines.push(`by: ${r.triggered_by}`);
  return lines.join("\n");
}

/** The DAG's last runs, newest first as the API gives them (`recent_runs`, else `last_run`). */
export function recentRuns(dag) {
  if (Array.isArray(dag?.recent_runs)) return dag.recent_runs;
  return dag?.last_run ? [dag.last_run] : [];
}

/** The last runs as squares, oldest on the left; each opens its run. */
export function RecentRuns({ dag }) {
  const runs = recentRuns(dag).slice(0, 10).reverse();
  return (
    <span class="recent-runs" aria-label={`Last ${runs.length} runs, oldest first`}>
      {runs.length ? (
        runs.map((r) => (
          <StateSquare key={r.run_id} state={r.state} tip={runTip(r)} data-run-id={r.run_id} onClick={() => navigate(`/runs/${enc(r.run_id)}`)} />
        ))
      ) : (
        <span class="muted">no runs yet</span>
      )}
    </span>
  );
}

/**
 * Pause / unpause (operators and admins); a plain label for the others. `onChanged(is_paused)`
 * after the API said yes.
 */
export function PauseToggle({ dag, onChanged }) {
  const me = useSession();
  const [busy, setBusy] = useState(false);
  const [optimistic, setOptimistic] = useState(null);
  const paused = optimistic ?? dag.is_paused;
  if (!atLeast("operator", me))
    return (
      <Tip tip={paused ? "Paused: the schedule creates no runs and queued runs wait" : "Active: the schedule creates runs"} class={`pause-state ${paused ? "is-paused" : "is-active"}`}>
        <span aria-hidden="true">{paused ? "⏸" : "▶"}</span> {paused ? "paused" : "active"}
      </Tip>
    );
  const toggle = async () => {
    const next = !paused;
    setBusy(true);
    setOptimistic(next);
    try {
      const answer = await patch(`/api/v1/dags/${enc(dag.dag_id)}`, { is_paused: next });
      toast(`${dag.dag_id} ${answer.is_paused ? "paused" : "unpaused"}`, "success");
      onChanged?.(answer.is_paused);
    } catch (e) {
      toast(`Could not ${next ? "pause" : "unpause"} ${dag.dag_id}: ${e.message}`, "error");
    } finally {
      setOptimistic(null);
      setBusy(false);
    }
  };
  const tip = paused
    ? `Paused: no scheduled runs are created and queued runs wait. Press to unpause ${dag.dag_id}`
    : `Active: the schedule creates runs. Press to pause ${dag.dag_id} (running tasks finish, nothing new starts)`;
  return (
    <button
      type="button"
      class={`btn pause-toggle ${paused ? "is-paused" : "is-active"}`}
      aria-pressed={paused ? "true" : "false"}
      data-paused={paused ? "true" : "false"}
      data-tip={tip}
      aria-label={tip}
      disabled={busy}
      onClick={toggle}
    >
      <span class="switch" aria-hidden="true">
        <span class="knob" />
      </span>
      <span class="pause-word">{paused ? "paused" : "active"}</span>
    </button>
  );
}

/** Every DAG, paged by the API's limit (1000) and joined. */
async function loadDags() {
  const items = [];
  for (let offset = 0; ; ) {
    const page = await get("/api/v1/dags" + query({ limit: 1000, offset }));
    items.push(...(page.items || []));
    offset += (page.items || []).length;
    if (!page.items?.length || page.total === undefined || offset >= page.total) break;
  }
  return items;
}

const SORTS = {
  dag_id: (a, b) => a.dag_id.localeCompare(b.dag_id),
  owner: (a, b) => (a.owner || "").localeCompare(b.owner || "") || a.dag_id.localeCompare(b.dag_id),
  last_run: (a, b) => lastRunTime(b) - lastRunTime(a) || a.dag_id.localeCompare(b.dag_id),
  next_run: (a, b) => nextRunTime(a) - nextRunTime(b) || a.dag_id.localeCompare(b.dag_id),
};
const lastRunTime = (d) => {
  const r = recentRuns(d)[0];
  return r ? Date.parse(r.started_at || r.created_at || r.logical_date) || 0 : 0;
};
const nextRunTime = (d) => (d.next_run ? Date.parse(d.next_run) : Infinity);

const PAGE = 100;

/**
 * Every DAG, for filtering and sorting here. With `quick`, the first page by id comes first (one
 * small answer: only its DAGs' runs are read), shown while the rest loads. Answers `{data,
 * error, complete, total, reload}`.
 */
function useDagList(quick) {
  const [state, setState] = useState({ data: null, error: null, complete: false, total: null });
  const generation = useRef(0);
  const load = useCallback(async (first) => {
    const mine = ++generation.current;
    try {
      if (first) {
        const page = await get("/api/v1/dags" + query({ limit: PAGE }));
        const items = page.items || [];
        const complete = items.length >= (page.total ?? 0);
        if (mine === generation.current) setState({ data: items, error: null, complete, total: page.total ?? items.length });
        if (complete) return;
      }
      const items = await loadDags();
      if (mine === generation.current) setState({ data: items, error: null, complete: true, total: items.length });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ ...s, error }));
    }
  }, []);
  useEffect(() => {
    load(quick);
  }, []);
  return { ...state, reload: () => load(false) };
}

export function DagList({ params }) {
  const me = useSession();
  // The first page alone first, when it is what is shown: no filter, the default order.
  const first = !["search", "tag", "owner", "state", "paused", "sort", "page"].some((k) => params?.get(k));
  const dags = useDagList(first);
  const errors = useAsync(() => get("/api/v1/import-errors").then((r) => r.items || []), []);
  const [triggerFor, setTriggerFor] = useState(null);
  const [showErrors, setShowErrors] = useState(false);

  const reload = useThrottled(() => dags.reload(), 300);
  useLive((name) => name === "run", reload);

  const search = params?.get("search") || "";
  const tag = params?.get("tag") || "";
  const owner = params?.get("owner") || "";
  const state = params?.get("state") || "";
  const paused = params?.get("paused") || "";
  const sort = params?.get("sort") || "dag_id";
  const page = Math.max(0, Number(params?.get("page") || 0) || 0);

  const all = dags.data || [];
  const tags = useMemo(() => [...new Set(all.flatMap((d) => d.tags || []))].sort(), [all]);
  const owners = useMemo(() => [...new Set(all.map((d) => d.owner).filter(Boolean))].sort(), [all]);

  const shown = useMemo(() => {
    const q = search.trim().toLowerCase();
    const list = all.filter((d) => {
      if (q && !(d.dag_id.toLowerCase().includes(q) || (d.description || "").toLowerCase().includes(q) || (d.tags || []).some((t) => t.toLowerCase().includes(q))))
        return false;
      if (tag && !(d.tags || []).includes(tag)) return false;
      if (owner && d.owner !== owner) return false;
      if (paused === "true" && !d.is_paused) return false;
      if (paused === "false" && d.is_paused) return false;
      if (state) {
        const last = recentRuns(d)[0];
        if (state === "none" ? !!last : last?.state !== state) return false;
      }
      return true;
    });
    list.sort(SORTS[sort] || SORTS.dag_id);
    return list;
  }, [all, search, tag, owner, state, paused, sort]);

  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  const current = Math.min(page, pages - 1);
  const rows = shown.slice(current * PAGE, current * PAGE + PAGE);
  const set = (changes) => setParams({ ...changes, page: null });
  const filtered = search || tag || owner || state || paused;

  const sortHead = (k, children, tip) => (
    <th aria-sort={sort === k ? "ascending" : undefined}>
      <button type="button" class={`sort${sort === k ? " on" : ""}`} data-tip={tip} onClick={() => set({ sort: k === "dag_id" ? null : k })}>
        {children}
        {sort === k ? <span aria-hidden="true"> ▾</span> : null}
      </button>
    </th>
  );

  const importErrors = errors.data || [];
  return (
    <main class="page" id="dag-list" data-ready={dags.data || dags.error ? "true" : "false"} data-complete={dags.complete ? "true" : "false"}>
      <div class="list-head">
        <h1>DAGs</h1>
        <span class="muted" id="dag-count">
          {dags.data && !dags.complete ? `${dags.total} DAGs (loading all for search and sort…)` : dags.data ? (filtered ? `${shown.length} of ${all.length}` : `${all.length}`) + (all.length === 1 ? " DAG" : " DAGs") : ""}
        </span>
        <span class="spacer" />
        {importErrors.length ? (
          <Button
            class="import-errors-toggle btn-warn"
            id="import-errors-toggle"
            tip={showErrors ? "Hide the files that failed to load" : "Show the DAG files of watched folders that failed to load"}
            aria-expanded={showErrors ? "true" : "false"}
            onClick={() => setShowErrors(!showErrors)}
          >
            <span aria-hidden="true">⚠ </span>
            {importErrors.length} import error{importErrors.length === 1 ? "" : "s"}
          </Button>
        ) : null}
      </div>

      {showErrors && importErrors.length ? (
        <section class="panel import-errors" id="import-errors" aria-label="Import errors">
          <h2>Files that failed to load</h2>
          <p class="muted">Each DAG named here keeps running its last good version until its file loads again.</p>
          <ul>
            {importErrors.map((e, i) => (
              <li key={i} class="import-error">
                <div class="row">
                  <code>{e.file_path}</code>
                  {e.dag_id ? <Link href={`/dags/${enc(e.dag_id)}`}>{e.dag_id}</Link> : null}
                  <span class="muted" data-tip={time(e.at)}>
                    {ago(e.at)}
                  </span>
                </div>
                <pre class="import-message">{e.message}</pre>
              </li>
            ))}
          </ul>
        </section>
      ) : null}

      <div class="filters" role="search">
        <label>
          Search
          <input
            id="dag-search"
            type="search"
            value={search}
            placeholder="DAG id, description or tag"
            data-tip="Show only DAGs whose id, description or tags contain this text"
            onInput={(e) => set({ search: e.currentTarget.value })}
          />
        </label>
        <label>
          Tag
          <select id="filter-tag" value={tag} data-tip="Show only DAGs with this tag" onChange={(e) => set({ tag: e.currentTarget.value })}>
            <option value="">any tag</option>
            {tags.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
            {tag && !tags.includes(tag) ? <option value={tag}>{tag}</option> : null}
          </select>
        </label>
        <label>
          Owner
          <select id="filter-owner" value={owner} data-tip="Show only DAGs of this owner" onChange={(e) => set({ owner: e.currentTarget.value })}>
            <option value="">any owner</option>
            {owners.map((o) => (
              <option key={o} value={o}>
                {o}
              </option>
            ))}
            {owner && !owners.includes(owner) ? <option value={owner}>{owner}</option> : null}
          </select>
        </label>
        <label>
          Last run
          <select id="filter-state" value={state} data-tip="Show only DAGs whose last run is in this state" onChange={(e) => set({ state: e.currentTarget.value })}>
            <option value="">any state</option>
            {RUN_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
            <option value="none">never ran</option>
          </select>
        </label>
        <label>
          Paused
          <select id="filter-paused" value={paused} data-tip="Show only paused or only active DAGs" onChange={(e) => set({ paused: e.currentTarget.value })}>
            <option value="">paused or not</option>
            <option value="false">active</option>
            <option value="true">paused</option>
          </select>
        </label>
        {filtered ? (
          <Button id="filters-clear" tip="Show every DAG again" onClick={() => set({ search: null, tag: null, owner: null, state: null, paused: null })}>
            Clear filters
          </Button>
        ) : null}
      </div>

      <ErrorBox error={dags.error} />
      {!dags.data && !dags.error ? <Loading what="Loading the DAGs" /> : null}
      {dags.data ? (
        <table class="data dag-table" id="dag-table">
          <thead>
            <tr>
              <th class="col-pause">
                <Tip tip="Paused DAGs create no scheduled runs">Paused</Tip>
              </th>
              {sortHead("dag_id", "DAG", "Sort by DAG id")}
              {sortHead("owner", "Owner", "Sort by owner")}
              <th>
                <Tip tip="The schedule (cron or preset); none: runs only when triggered">Schedule</Tip>
              </th>
              {sortHead("next_run", "Next run", "Sort by the next scheduled run, soonest first")}
              {sortHead("last_run", "Last runs", "Sort by the last run, newest first")}
              {atLeast("author", me) ? <th class="col-actions">Actions</th> : null}
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <DagRow key={d.dag_id} dag={d} canTrigger={atLeast("author", me)} onTrigger={() => setTriggerFor(d.dag_id)} onTag={(t) => set({ tag: t })} onChanged={() => dags.reload()} />
            ))}
            {!rows.length ? (
              <tr>
                <td colSpan={7} class="empty-row">
                  {all.length ? "No DAG matches these filters." : "No DAG yet: push a bundle (Upload) or put DAG files in a watched folder."}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      ) : null}
      {pages > 1 ? (
        <nav class="pager" aria-label="Pages">
          <Button id="dags-prev" tip="The previous page" disabled={current === 0} onClick={() => setParams({ page: current - 1 || null })}>
            ← Previous
          </Button>
          <span class="muted">
            Page {current + 1} of {pages}
          </span>
          <Button id="dags-next" tip="The next page" disabled={current >= pages - 1} onClick={() => setParams({ page: current + 1 })}>
            Next →
          </Button>
        </nav>
      ) : null}
      {triggerFor ? <TriggerDialog dagId={triggerFor} onClose={() => setTriggerFor(null)} /> : null}
    </main>
  );
}

function DagRow({ dag: d, canTrigger, onTrigger, onTag, onChanged }) {
  return (
    <tr id={`dag-row-${d.dag_id}`} data-dag-id={d.dag_id} class={d.is_paused ? "paused" : ""}>
      <td class="col-pause">
        <PauseToggle dag={d} onChanged={onChanged} />
      </td>
      <td class="col-dag">
        <Link href={`/dags/${enc(d.dag_id)}`} class="dag-link">
          {d.dag_id}
        </Link>
        {d.is_stale ? (
          <Tip tip="Stale: its file is gone from the watched folder; it keeps its versions and runs" class="badge badge-stale">
            stale
          </Tip>
        ) : null}
        {d.description ? <div class="dag-desc muted">{d.description}</div> : null}
        {d.tags?.length ? (
          <div class="tags">
            {d.tags.map((t) => (
              <button type="button" class="tag" key={t} data-tip={`Show only DAGs tagged ${t}`} onClick={() => onTag(t)}>
                {t}
              </button>
            ))}
          </div>
        ) : null}
      </td>
      <td>{d.owner || <span class="muted">–</span>}</td>
      <td>{d.schedule ? <code>{d.schedule}</code> : <span class="muted">none</span>}</td>
      <td>
        {d.next_run ? (
          <Tip tip={`The schedule's next run: ${time(d.next_run)}${d.is_paused ? " (not while paused)" : ""}`} class={d.is_paused ? "muted" : ""}>
            {ago(d.next_run)}
          </Tip>
        ) : (
          <span class="muted">–</span>
        )}
      </td>
      <td>
        <RecentRuns dag={d} />
      </td>
      {canTrigger ? (
        <td class="col-actions">
          <Button class="btn-icon trigger-row" tip={`Trigger a run of ${d.dag_id}: choose its conf, note and version`} label={`Trigger ${d.dag_id}`} onClick={onTrigger}>
            ▶ Trigger
          </Button>
        </td>
      ) : null}
    </tr>
  );
}
