// One DAG (`/dags/ID/TAB`): its header (description, owner, tags, schedule, next run, active
// version, pause, trigger) and its tabs: the graph of its tasks coloured by a run's states, the
// grid of its last runs (runs as columns, newest on the right, tasks as rows), the Gantt chart of
// a run's tries, the duration of each task over the last runs, the runs (filtered, paged, picked
// to compare), the versions (activate, diff, experiments) and the code of a version. The selected
// run is `?run=` (default: the newest); a task clicked anywhere opens the task panel (`?task=`).
// Everything shown reloads on the live events of this DAG.
import "uplot/dist/uPlot.min.css";
import "./dag.css";
import "./panels.css";
import dagre from "@dagrejs/dagre";
import uPlot from "uplot";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { enc, get, post, query } from "../api.js";
import { Button, ErrorBox, Loading, STATES, StateBadge, StateSquare, Tabs, Tip, confirm, stateInfo, toast, useAsync, useThrottled } from "../components.jsx";
import { ago, duration, secondsBetween, time } from "../format.js";
import { useLive } from "../live.js";
import { Link, navigate, setParams } from "../router.jsx";
import { atLeast, useSession } from "../session.js";
import { PauseToggle, RUN_STATES, VersionTag, recentRuns, runTip, shortVersion } from "./dags.jsx";
import { TaskPanel } from "./task.jsx";
import { TriggerDialog } from "./trigger.jsx";

const TABS = [
  ["graph", "Graph", "The tasks and their dependencies, coloured by the selected run's states"],
  ["grid", "Grid", "The last runs as columns (newest on the right), a row per task"],
  ["gantt", "Gantt", "The selected run's tries on a time line, the critical path highlighted"],
  ["duration", "Duration", "Each task's duration over the last runs"],
  ["runs", "Runs", "Every run of this DAG, filtered and paged; pick some to compare"],
  ["versions", "Versions", "The DAG's versions, which one is active, their differences and experiments"],
  ["code", "Code", "The source of a version and its pinned plugins"],
];

const FINISHED = ["success", "failed", "skipped", "upstream_failed", "removed"];

/** `✓12 ▶3 ✕1` from `{success: 12, running: 3, failed: 1}`. */
function countsText(counts) {
  return Object.entries(counts || {})
    .filter(([, n]) => n)
    .map(([s, n]) => `${stateInfo(s).symbol}${n}`)
    .join(" ");
}

/** `12 success, 3 running` (words, for screen readers and tooltips). */
function countsWords(counts) {
  return Object.entries(counts || {})
    .filter(([, n]) => n)
    .map(([s, n]) => `${n} ${stateInfo(s).label}`)
    .join(", ");
}

/** The overall state of a mapped task from its instances' states. */
function overallState(counts) {
  const has = (s) => (counts[s] || 0) > 0;
  for (const s of ["running", "queued", "up_for_retry", "up_for_reschedule", "scheduled"]) if (has(s)) return s;
  if (has("failed")) return "failed";
  if (has("upstream_failed")) return "upstream_failed";
  if (has("success")) return "success";
  if (has("skipped")) return "skipped";
  if (has("removed")) return "removed";
  return "none";
}

/** Per task id of a run: `{state, mapped, instances, counts, try_number}`. */
function taskStates(run) {
  const byTask = new Map();
  for (const ti of run?.tasks || []) {
    let g = byTask.get(ti.task_id);
    if (!g) byTask.set(ti.task_id, (g = { parent: null, children: [] }));
    if (ti.map_index >= 0) g.children.push(ti);
    else g.parent = ti;
  }
  const out = new Map();
  for (const [id, g] of byTask) {
    const counts = {};
    for (const c of g.children) counts[c.state] = (counts[c.state] || 0) + 1;
    const mapped = g.children.length > 0;
    out.set(id, {
      state: g.parent?.state || (mapped ? overallState(counts) : "none"),
      mapped,
      instances: g.children.length,
      counts,
      try_number: g.parent?.try_number ?? (mapped ? Math.max(0, ...g.children.map((c) => c.try_number || 0)) : 0),
    });
  }
  return out;
}

/** The href of a tab, keeping the selected run. */
function tabHref(dagId, tab, runId) {
  return `/dags/${enc(dagId)}/${tab}${runId ? query({ run: runId }) : ""}`;
}

// ---------------------------------------------------------------------------------------------
// The page

export function DagPage({ dagId, tab, params }) {
  const me = useSession();
  const dag = useAsync(() => get(`/api/v1/dags/${enc(dagId)}`), [dagId]);
  const [tick, setTick] = useState(0);
  const [triggering, setTriggering] = useState(false);
  const reloadAll = useThrottled(() => {
    dag.reload();
    setTick((n) => n + 1);
  }, 500);
  useLive((name, d) => (name === "run" || name === "task") && d?.dag_id === dagId, reloadAll);

  const d = dag.data;
  const runs = recentRuns(d);
  const runId = params?.get("run") || runs[0]?.run_id || null;
  const openTask = params?.get("task") || null;
  const openMap = params?.get("map_index");
  const current = TABS.some(([k]) => k === tab) ? tab : "graph";

  const openTaskOf = (taskId, runOf, mapIndex) => setParams({ task: taskId, map_index: mapIndex ?? null, run: runOf || runId });
  const closeTask = () => setParams({ task: null, map_index: null });
  const onTriggered = (run) => {
    if (run?.run_id) setParams({ run: run.run_id });
    dag.reload();
    setTick((n) => n + 1);
  };

  if (!d)
    return (
      <main id="dag-page" class="page" data-ready={dag.error ? "true" : "false"}>
        <h1 class="mono">{dagId}</h1>
        {dag.loading ? <Loading what="Loading the DAG" /> : <ErrorBox error={dag.error} />}
      </main>
    );

  const shared = { dag: d, dagId, runId, runs, tick, params, openTask: openTaskOf };
  return (
    <main id="dag-page" class="page" data-ready="true" data-dag-id={dagId} data-run-id={runId || ""}>
      <DagHeader dag={d} canTrigger={atLeast("author", me)} onTrigger={() => setTriggering(true)} onChanged={() => dag.reload()} />
      <ErrorBox error={dag.error} />
      <Tabs tabs={TABS} current={current} hrefOf={(k) => tabHref(dagId, k, params?.get("run"))} Link={Link} />
      <section class="tab-body" id={`tab-body-${current}`}>
        {current === "graph" ? <GraphTab {...shared} /> : null}
        {current === "grid" ? <GridTab {...shared} /> : null}
        {current === "gantt" ? <GanttTab {...shared} /> : null}
        {current === "duration" ? <DurationTab {...shared} /> : null}
        {current === "runs" ? <RunsTab {...shared} /> : null}
        {current === "versions" ? <VersionsTab {...shared} onActivated={() => dag.reload()} /> : null}
        {current === "code" ? <CodeTab {...shared} /> : null}
      </section>
      {openTask && runId ? (
        <TaskPanel runId={runId} taskId={openTask} mapIndex={openMap === null || openMap === undefined || openMap === "" ? null : Number(openMap)} onClose={closeTask} />
      ) : null}
      {triggering ? <TriggerDialog dagId={dagId} onClose={() => setTriggering(false)} onTriggered={onTriggered} /> : null}
    </main>
  );
}

function DagHeader({ dag: d, canTrigger, onTrigger, onChanged }) {
  return (
    <header class="dag-head panel">
      <div class="page-head">
        <h1 class="mono" id="dag-title">
          {d.dag_id}
        </h1>
        {d.is_stale ? (
          <Tip tip="Stale: its file is gone from the watched folder; it keeps its versions and runs" class="badge badge-stale">
            stale
          </Tip>
        ) : null}
        <PauseToggle dag={d} onChanged={onChanged} />
        <span class="spacer" />
        {canTrigger ? (
          <Button id="trigger-open" primary tip={`Trigger a run of ${d.dag_id}: choose its conf, note and version`} onClick={onTrigger}>
            ▶ Trigger
          </Button>
        ) : null}
      </div>
      {d.description ? (
        <p class="dag-description" id="dag-description">
          {d.description}
        </p>
      ) : null}
      <dl class="dag-facts">
        <div>
          <dt>Owner</dt>
          <dd id="dag-owner">{d.owner || <span class="muted">–</span>}</dd>
        </div>
        <div>
          <dt>Schedule</dt>
          <dd id="dag-schedule">{d.schedule ? <code>{d.schedule}</code> : <span class="muted">none (triggered only)</span>}</dd>
        </div>
        <div>
          <dt>Next run</dt>
          <dd id="dag-next-run">
            {d.next_run ? (
              <Tip tip={`The schedule's next run: ${time(d.next_run)}${d.is_paused ? " (not while paused)" : ""}`} class={d.is_paused ? "muted" : ""}>
                {ago(d.next_run)}
              </Tip>
            ) : (
              <span class="muted">–</span>
            )}
          </dd>
        </div>
        <div>
          <dt>Active version</dt>
          <dd id="dag-version">
            <VersionTag version={d.active_version} active />
          </dd>
        </div>
        <div>
          <dt>Tasks</dt>
          <dd>{d.tasks_detail?.length ?? d.tasks ?? "–"}</dd>
        </div>
        {d.file ? (
          <div>
            <dt>File</dt>
            <dd class="mono">{d.file}</dd>
          </div>
        ) : null}
        {d.tags?.length ? (
          <div>
            <dt>Tags</dt>
            <dd class="tags" id="dag-tags">
              {d.tags.map((t) => (
                <Link key={t} class="tag" href={`/${query({ tag: t })}`} data-tip={`Every DAG tagged ${t}`}>
                  {t}
                </Link>
              ))}
            </dd>
          </div>
        ) : null}
      </dl>
    </header>
  );
}

/** `select#run-pick`: the run the graph and the Gantt chart show. */
function RunPicker({ runs, runId }) {
  const known = runs.some((r) => r.run_id === runId);
  return (
    <label class="inline">
      Run
      <select id="run-pick" value={runId || ""} onChange={(e) => setParams({ run: e.currentTarget.value, task: null, map_index: null })} data-tip="The run whose states are shown (the 10 newest; older ones from the Runs tab)">
        {!runs.length ? <option value="">no runs yet</option> : null}
        {runId && !known ? <option value={runId}>{runId}</option> : null}
        {runs.map((r) => (
          <option key={r.run_id} value={r.run_id}>
            {stateInfo(r.state).symbol} {r.run_id} — {r.state} — {time(r.logical_date || r.created_at)}
          </option>
        ))}
      </select>
    </label>
  );
}

/** Reloads `async` (without blanking) each time the live `tick` changes. */
function useReloadOn(tick, async) {
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    async.reload();
  }, [tick]);
}

/** The selected run's header line: its state badge and a link to its page. */
function RunLine({ run }) {
  if (!run) return null;
  return (
    <span class="run-line" id="run-line" data-state={run.state}>
      <StateBadge state={run.state} />{" "}
      <Link href={`/runs/${enc(run.run_id)}`} class="mono" data-tip="The run's page: conf, note, every task instance, actions">
        {run.run_id}
      </Link>
      {run.started_at ? <span class="muted"> · {duration(secondsBetween(run.started_at, run.ended_at))}{run.ended_at ? "" : " so far"}</span> : null}
    </span>
  );
}

function StateLegend() {
  return (
    <div class="legend" id="state-legend" aria-label="What the colours and symbols mean">
      {Object.keys(STATES).map((s) => (
        <StateBadge key={s} state={s} />
      ))}
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Graph

const NODE_H = 46;
const NODE_H_MAPPED = 62;

/** The dagre layout of the tasks (left to right): nodes `{id, x, y, width, height, task}` and edges `{from, to, points}`. */
function layoutGraph(tasks) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 56, edgesep: 10, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(tasks.map((t) => t.task_id));
  for (const t of tasks) {
    const width = Math.max(150, Math.min(360, t.task_id.length * 7.6 + 56));
    g.setNode(t.task_id, { width, height: t.map_over ? NODE_H_MAPPED : NODE_H, task: t });
  }
  for (const t of tasks) for (const up of t.upstream || []) if (ids.has(up)) g.setEdge(up, t.task_id);
  dagre.layout(g);
  const nodes = g.nodes().map((id) => {
    const n = g.node(id);
    return { id, x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, task: n.task };
  });
  const edges = g.edges().map((e) => ({ from: e.v, to: e.w, points: g.edge(e).points || [] }));
  const info = g.graph();
  return { nodes, edges, width: Math.ceil(info.width || 0), height: Math.ceil(info.height || 0) };
}

/** A smooth path through dagre's edge points. */
function edgePath(points) {
  if (!points.length) return "";
  let d = `M${points[0].x},${points[0].y}`;
  if (points.length === 2) return d + ` L${points[1].x},${points[1].y}`;
  for (let i = 1; i < points.length - 1; i++) {
    const p = points[i];
    const next = points[i + 1];
    const mid = i === points.length - 2 ? next : { x: (p.x + next.x) / 2, y: (p.y + next.y) / 2 };
    d += ` Q${p.x},${p.y} ${mid.x},${mid.y}`;
  }
  return d;
}

function GraphNode({ node, info, onOpen }) {
  const t = node.task;
  const state = info?.state || "none";
  const si = stateInfo(state);
  const mapped = !!t.map_over || info?.mapped;
  const label = `${t.task_id}: ${si.label}${mapped ? `, mapped${info?.instances ? `, ${info.instances} instances: ${countsWords(info.counts)}` : ""}` : ""}. Press Enter to open.`;
  const open = () => onOpen(t.task_id);
  const onKey = (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      open();
    }
  };
  return (
    <g
      class={`node${mapped ? " mapped" : ""}`}
      id={`node-${t.task_id}`}
      data-task={t.task_id}
      data-state={state}
      transform={`translate(${node.x},${node.y})`}
      tabindex="0"
      role="button"
      aria-label={label}
      onClick={open}
      onKeyDown={onKey}
    >
      <title>{label}</title>
      {mapped ? <rect class="node-stack" x={4} y={4} width={node.width} height={node.height} rx={6} /> : null}
      <rect class="node-rect" width={node.width} height={node.height} rx={6} />
      <rect class="node-band" width={26} height={node.height} rx={6} />
      <rect class="node-band-fix" x={20} width={6} height={node.height} />
      <text class="node-symbol" x={13} y={node.height / 2 + 5} text-anchor="middle" aria-hidden="true">
        {si.symbol}
      </text>
      <text class="node-id" x={34} y={18}>
        {t.task_id}
      </text>
      <text class="node-sub" x={34} y={34}>
        {si.label}
      </text>
      {mapped ? (
        <text class="node-mapped" x={34} y={50}>
          {info?.instances ? `${info.instances}× mapped  ${countsText(info.counts)}` : "mapped"}
        </text>
      ) : null}
    </g>
  );
}

function GraphTab({ dag, runId, runs, tick, openTask }) {
  const tasks = dag.tasks_detail || [];
  const layout = useMemo(() => layoutGraph(tasks), [JSON.stringify(tasks.map((t) => [t.task_id, t.upstream, t.map_over]))]);
  const run = useAsync(() => (runId ? get(`/api/v1/runs/${enc(runId)}`) : Promise.resolve(null)), [runId]);
  useReloadOn(tick, run);
  const states = useMemo(() => taskStates(run.data), [run.data]);
  const onOpen = (taskId) => openTask(taskId, runId, null);

  return (
    <div id="graph-view" data-ready={!runId || run.data || run.error ? "true" : "false"}>
      <div class="row tab-tools">
        <RunPicker runs={runs} runId={runId} />
        <RunLine run={run.data} />
      </div>
      <ErrorBox error={run.error} />
      {!tasks.length ? <p class="empty">This DAG has no tasks.</p> : null}
      <div class="graph-scroll">
        <svg id="graph" width={layout.width} height={layout.height} viewBox={`0 0 ${layout.width} ${layout.height}`} role="group" aria-label={`The ${tasks.length} tasks of ${dag.dag_id} and their dependencies`}>
          <defs>
            <marker id="graph-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" class="edge-head" />
            </marker>
          </defs>
          <g class="edges">
            {layout.edges.map((e) => (
              <path key={e.from + "\u0000" + e.to} class="edge" data-from={e.from} data-to={e.to} d={edgePath(e.points)} marker-end="url(#graph-arrow)" />
            ))}
          </g>
          <g class="nodes">
            {layout.nodes.map((n) => (
              <GraphNode key={n.id} node={n} info={states.get(n.id)} onOpen={onOpen} />
            ))}
          </g>
        </svg>
      </div>
      <StateLegend />
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Grid

const LIMITS = [10, 25, 50];

function limitOf(params, fallback = 25) {
  const n = Number(params?.get("limit"));
  return LIMITS.includes(n) ? n : fallback;
}

function LimitPicker({ value, id, what }) {
  return (
    <label class="inline">
      Runs
      <select id={id} value={value} onChange={(e) => setParams({ limit: e.currentTarget.value })} data-tip={`How many of the last runs ${what}`}>
        {LIMITS.map((n) => (
          <option key={n} value={n}>
            last {n}
          </option>
        ))}
      </select>
    </label>
  );
}

/** A grid cell's tooltip: task, run, state, try, duration; mapped: the instances' counts. */
function cellTip(taskId, run, cell) {
  const lines = [`${taskId} in ${run.run_id}`, `state: ${stateInfo(cell.state).label}`];
  if (cell.instances > 1 || (cell.states && Object.keys(cell.states).length > 1)) lines.push(`${cell.instances} instances: ${countsText(cell.states)}`);
  if (cell.try_number !== undefined && cell.try_number !== null) lines.push(`try: ${cell.try_number}`);
  if (cell.started_at) lines.push(`duration: ${duration(secondsBetween(cell.started_at, cell.ended_at))}${cell.ended_at ? "" : " so far"}`);
  return lines.join("\n");
}

function GridHead({ runs, runId }) {
  return (
    <thead>
      <tr>
        <th class="grid-corner" scope="col">
          Task <span class="muted">/ run →</span>
        </th>
        {runs.map((r) => (
          <th key={r.run_id} scope="col" class={`grid-run${r.run_id === runId ? " selected" : ""}`} data-run={r.run_id} data-state={r.state}>
            <StateSquare
              state={r.state}
              tip={runTip(r) + "\nPress to select this run"}
              selected={r.run_id === runId}
              data-run-id={r.run_id}
              onClick={() => setParams({ run: r.run_id })}
            />
            <span class="grid-date">{shortDate(r.logical_date || r.created_at)}</span>
          </th>
        ))}
      </tr>
    </thead>
  );
}

function shortDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

function GridTable({ data, runId, onCell }) {
  const runs = [...data.runs].reverse();
  const cells = data.cells || {};
  return (
    <div class="grid-scroll">
      <table id="grid" class="grid" aria-label="Task states per run, newest run on the right">
        <GridHead runs={runs} runId={runId} />
        <tbody>
          {(data.tasks || []).map((t) => (
            <tr key={t.task_id} data-task={t.task_id}>
              <th scope="row" class="mono grid-task">
                {t.task_id}
                {t.map_over ? <span class="muted" data-tip={`Mapped over ${t.map_over}`}> [ ]</span> : null}
              </th>
              {runs.map((r) => {
                const cell = cells[r.run_id]?.[t.task_id];
                const sel = r.run_id === runId ? " selected" : "";
                if (!cell)
                  return (
                    <td key={r.run_id} class={`cell empty${sel}`} data-run={r.run_id} data-task={t.task_id} data-state="none">
                      <span class="square state-none blank" aria-label={`${t.task_id} in ${r.run_id}: no instance yet`} role="img" />
                    </td>
                  );
                return (
                  <td key={r.run_id} class={`cell${sel}`} data-run={r.run_id} data-task={t.task_id} data-state={cell.state || "none"}>
                    <StateSquare state={cell.state} tip={cellTip(t.task_id, r, cell)} onClick={onCell} />
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function GridTab({ dagId, runId, tick, params, openTask }) {
  const limit = limitOf(params, 25);
  const grid = useAsync(() => get(`/api/v1/dags/${enc(dagId)}/grid` + query({ limit })), [dagId, limit]);
  useReloadOn(tick, grid);
  // One handler shared by every cell (no per-cell closures): the cell's data says what to open.
  const onCell = (e) => {
    const td = e.currentTarget.closest?.("td.cell");
    if (td) openTask(td.dataset.task, td.dataset.run, null);
  };
  return (
    <div id="grid-view" data-ready={grid.data || grid.error ? "true" : "false"}>
      <div class="row tab-tools">
        <LimitPicker value={limit} id="grid-limit" what="the grid shows" />
        <span class="muted">Press a square to open the task instance; press a run's square to select the run.</span>
      </div>
      <ErrorBox error={grid.error} />
      {grid.loading && !grid.data ? <Loading what="Loading the grid" /> : null}
      {grid.data ? grid.data.runs.length ? <GridTable data={grid.data} runId={runId} onCell={onCell} /> : <p class="empty">No runs yet.</p> : null}
      <StateLegend />
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Gantt

const LABEL_W = 240;
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400];

const ms = (iso) => (iso ? Date.parse(iso) : null);

/** The time span of a timeline in ms: `{start, end}`. */
function timelineSpan(tl) {
  const now = ms(tl.now) || Date.now();
  let start = ms(tl.started_at);
  let end = ms(tl.ended_at);
  for (const t of tl.tasks || [])
    for (const tr of t.tries || []) {
      for (const v of [ms(tr.queued_at), ms(tr.started_at)]) if (v !== null && (start === null || v < start)) start = v;
      const e = ms(tr.ended_at) ?? (tr.started_at ? now : null);
      if (e !== null && (end === null || e > end)) end = e;
    }
  if (start === null) start = now;
  if (end === null || !tl.ended_at) end = Math.max(end ?? now, tl.ended_at ? end : now);
  return { start, end: Math.max(end, start + 1000), now };
}

function tickStep(pps) {
  return STEPS.find((s) => s * pps >= 90) || STEPS[STEPS.length - 1];
}

function offsetText(seconds) {
  if (seconds === 0) return "0";
  if (seconds < 60) return `+${seconds} s`;
  if (seconds < 3600) return `+${Math.floor(seconds / 60)} min${seconds % 60 ? ` ${seconds % 60} s` : ""}`;
  return `+${Math.floor(seconds / 3600)} h${seconds % 3600 ? ` ${Math.round((seconds % 3600) / 60)} min` : ""}`;
}

function GanttAxis({ span, pps, width }) {
  const step = tickStep(pps);
  const total = (span.end - span.start) / 1000;
  const ticks = [];
  for (let s = 0; s <= total + 0.001; s += step) ticks.push(s);
  return (
    <div class="gantt-row gantt-axis-row" aria-hidden="true">
      <div class="gantt-label gantt-axis-label">Task</div>
      <div class="gantt-axis" style={{ width: width + "px" }}>
        {ticks.map((s) => (
          <span key={s} class="gantt-tick" style={{ left: s * pps + "px" }}>
            <span class="gantt-tick-text">{offsetText(s)}</span>
            <span class="gantt-tick-clock muted">{new Date(span.start + s * 1000).toLocaleTimeString()}</span>
          </span>
        ))}
      </div>
    </div>
  );
}

/** The two bars of a try: queued (queued_at → started_at) and running (started_at → ended_at or now). */
function tryBars(task, tr, span, pps, critical, label) {
  const bars = [];
  const x = (t) => ((t - span.start) / 1000) * pps;
  const q = ms(tr.queued_at);
  const s = ms(tr.started_at);
  const e = ms(tr.ended_at);
  const cls = critical ? " critical" : "";
  if (q !== null && (s ?? span.now) > q) {
    const end = s ?? span.now;
    bars.push({
      key: `q${tr.try_number}`,
      kind: "queued",
      cls: "gantt-bar queued" + (s === null ? " ongoing" : "") + cls,
      left: x(q),
      width: Math.max(2, x(end) - x(q)),
      tip: `${label}, try ${tr.try_number}: queued ${duration((end - q) / 1000)}${s === null ? " so far" : ""}\nqueued at ${time(tr.queued_at)}`,
      outcome: "queued",
    });
  }
  if (s !== null) {
    const end = e ?? span.now;
    const outcome = tr.outcome || (e === null ? "running" : "ended");
    bars.push({
      key: `r${tr.try_number}`,
      kind: "running",
      cls: "gantt-bar running" + (e === null ? " ongoing" : "") + cls,
      left: x(s),
      width: Math.max(3, x(end) - x(s)),
      tip: `${label}, try ${tr.try_number}: ${e === null ? "running for" : "ran"} ${duration((end - s) / 1000)}\nstarted ${time(tr.started_at)}${e === null ? "" : `\nended ${time(tr.ended_at)}`}\noutcome: ${tr.outcome || (e === null ? "still running" : "–")}${critical ? "\non the critical path" : ""}`,
      outcome,
    });
  }
  return bars;
}

function GanttRow({ task, span, pps, width, critical, onOpen }) {
  const mapped = task.instances > 1 || (task.map_index === null && task.states && Object.values(task.states).reduce((a, b) => a + b, 0) > 1);
  const label = mapped ? `${task.task_id} [${task.instances}]` : task.map_index !== null && task.map_index !== undefined && task.map_index >= 0 ? `${task.task_id} [${task.map_index}]` : task.task_id;
  const open = () => onOpen(task.task_id, task.map_index ?? null);
  const bars = (task.tries || []).flatMap((tr) => tryBars(task, tr, span, pps, critical, label));
  return (
    <div class={`gantt-row${critical ? " critical" : ""}`} data-task={task.task_id} data-state={task.state || "none"}>
      <div class="gantt-label">
        <button type="button" class="gantt-task" data-tip={`Open ${label}: ${stateInfo(task.state).label}${mapped ? ` (${countsWords(task.states)})` : ""}${critical ? "; on the critical path" : ""}`} onClick={open}>
          <StateBadge state={task.state} compact />
          <span class="mono">{label}</span>
          {critical ? <span class="critical-mark" aria-label="on the critical path">◆</span> : null}
        </button>
      </div>
      <div class="gantt-track" style={{ width: width + "px" }}>
        {bars.map((b) => (
          <button
            key={b.key}
            type="button"
            class={b.cls}
            data-kind={b.kind}
            data-outcome={b.outcome}
            data-try={b.key.slice(1)}
            style={{ left: b.left + "px", width: b.width + "px" }}
            data-tip={b.tip}
            aria-label={b.tip}
            onClick={open}
          />
        ))}
        {!bars.length ? <span class="gantt-none muted">not started</span> : null}
      </div>
    </div>
  );
}

function GanttChart({ tl, zoom, onOpen }) {
  const span = timelineSpan(tl);
  const seconds = (span.end - span.start) / 1000;
  const fit = Math.max(0.0005, 900 / Math.max(1, seconds));
  const pps = fit * zoom;
  const width = Math.ceil(seconds * pps) + 40;
  const critical = new Set(tl.critical_path || []);
  return (
    <div class="gantt-scroll">
      <div class="gantt-inner" style={{ width: LABEL_W + width + "px" }} data-pps={pps.toFixed(4)}>
        <GanttAxis span={span} pps={pps} width={width} />
        {(tl.tasks || []).map((t) => (
          <GanttRow key={t.task_id + ":" + (t.map_index ?? "")} task={t} span={span} pps={pps} width={width} critical={critical.has(t.task_id)} onOpen={onOpen} />
        ))}
        {!tl.ended_at ? <div class="gantt-now" style={{ left: LABEL_W + ((span.now - span.start) / 1000) * pps + "px" }} aria-hidden="true" /> : null}
      </div>
    </div>
  );
}

function GanttTab({ runId, runs, tick, openTask }) {
  const [zoom, setZoom] = useState(1);
  const tl = useAsync(() => (runId ? get(`/api/v1/runs/${enc(runId)}/timeline`) : Promise.resolve(null)), [runId]);
  useReloadOn(tick, tl);
  // A running run's bars grow with the clock between events.
  useEffect(() => {
    if (!tl.data || tl.data.ended_at) return;
    const t = setInterval(() => tl.reload(), 5000);
    return () => clearInterval(t);
  }, [tl.data?.ended_at, !!tl.data, runId]);
  const onOpen = (taskId, mapIndex) => openTask(taskId, runId, mapIndex);
  return (
    <div id="gantt" data-ready={!runId || tl.data || tl.error ? "true" : "false"} data-zoom={zoom}>
      <div class="row tab-tools">
        <RunPicker runs={runs} runId={runId} />
        {tl.data ? <RunLine run={{ ...tl.data, run_id: tl.data.run_id || runId }} /> : null}
        <span class="spacer" />
        <span class="zoom-buttons" role="group" aria-label="Zoom">
          <Button id="gantt-zoom-out" tip="Zoom out: fewer pixels per second" onClick={() => setZoom((z) => Math.max(0.125, z / 2))}>
            −
          </Button>
          <Button id="gantt-zoom-reset" tip="Fit the whole run in the view" onClick={() => setZoom(1)}>
            Fit
          </Button>
          <Button id="gantt-zoom-in" tip="Zoom in: more pixels per second" onClick={() => setZoom((z) => Math.min(256, z * 2))}>
            +
          </Button>
        </span>
      </div>
      <div class="legend gantt-legend">
        <span class="legend-item">
          <span class="gantt-swatch queued" aria-hidden="true" /> queued (waiting for a slot)
        </span>
        <span class="legend-item">
          <span class="gantt-swatch running" aria-hidden="true" /> running / ran
        </span>
        <span class="legend-item">
          <span class="gantt-swatch running ongoing" aria-hidden="true" /> still running (striped)
        </span>
        <span class="legend-item">
          <span class="critical-mark" aria-hidden="true">◆</span> critical path (outlined)
        </span>
      </div>
      <ErrorBox error={tl.error} />
      {!runId ? <p class="empty">No runs yet.</p> : null}
      {tl.loading && !tl.data ? <Loading what="Loading the timeline" /> : null}
      {tl.data ? <GanttChart tl={tl.data} zoom={zoom} onOpen={onOpen} /> : null}
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Duration

const PALETTE = ["#2457c5", "#c62828", "#1f8a3b", "#d97706", "#7b1fa2", "#00838f", "#6d4c41", "#ad1457", "#558b2f", "#37474f"];
const DASHES = [[], [6, 3], [2, 3], [10, 4, 2, 4], [], [6, 3], [2, 3], [10, 4, 2, 4], [], [6, 3]];

function median(values) {
  const v = values.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Per task: its duration in each run (oldest first; null when not finished), median, max, last. */
function durationSeries(data) {
  const runs = [...data.runs].reverse();
  const cells = data.cells || {};
  const rows = (data.tasks || []).map((t) => {
    const values = runs.map((r) => {
      const c = cells[r.run_id]?.[t.task_id];
      return c?.started_at && c?.ended_at ? secondsBetween(c.started_at, c.ended_at) : null;
    });
    const present = values.filter((v) => v !== null);
    return { task_id: t.task_id, values, median: median(values), max: present.length ? Math.max(...present) : null, last: present.length ? present[present.length - 1] : null, count: present.length };
  });
  return { runs, rows };
}

function DurationPlot({ runs, rows }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (!el || !rows.length || !runs.length) return;
    const xs = runs.map((_, i) => i);
    const opts = {
      width: Math.max(480, el.clientWidth || 900),
      height: 340,
      scales: { x: { time: false } },
      axes: [
        { values: (u, splits) => splits.map((i) => (Number.isInteger(i) && runs[i] ? shortDate(runs[i].logical_date || runs[i].created_at) : "")), label: "run (logical date)" },
        { values: (u, splits) => splits.map((s) => duration(s)), label: "duration", size: 70 },
      ],
      series: [
        { label: "run", value: (u, i) => (i === null || !runs[i] ? "–" : `${runs[i].run_id} (${shortDate(runs[i].logical_date || runs[i].created_at)})`) },
        ...rows.map((r, i) => ({
          label: r.task_id,
          stroke: PALETTE[i % PALETTE.length],
          dash: DASHES[i % DASHES.length],
          width: 2,
          spanGaps: true,
          points: { show: true, size: 5 },
          value: (u, v) => (v === null || v === undefined ? "–" : duration(v)),
        })),
      ],
    };
    let plot;
    try {
      plot = new uPlot(opts, [xs, ...rows.map((r) => r.values)], el);
    } catch (e) {
      el.textContent = `The chart could not be drawn (${e.message}); the table below has the figures.`;
      return;
    }
    const onResize = () => plot.setSize({ width: Math.max(480, el.clientWidth || 900), height: 340 });
    window.addEventListener("resize", onResize);
    return () => {
      window.removeEventListener("resize", onResize);
      plot.destroy();
    };
  }, [runs, rows]);
  return <div id="duration-chart" ref={ref} class="duration-chart" role="img" aria-label={`Durations of the ${rows.length} slowest tasks over the last ${runs.length} runs; the table below has the figures`} />;
}

function DurationTab({ dagId, tick, params }) {
  const limit = limitOf(params, 25);
  const grid = useAsync(() => get(`/api/v1/dags/${enc(dagId)}/grid` + query({ limit })), [dagId, limit]);
  useReloadOn(tick, grid);
  const series = useMemo(() => (grid.data ? durationSeries(grid.data) : { runs: [], rows: [] }), [grid.data]);
  const sorted = useMemo(() => [...series.rows].sort((a, b) => (b.median ?? -1) - (a.median ?? -1)), [series]);
  const top = useMemo(() => sorted.filter((r) => r.count > 0).slice(0, 10), [sorted]);
  return (
    <div id="duration-view" data-ready={grid.data || grid.error ? "true" : "false"}>
      <div class="row tab-tools">
        <LimitPicker value={limit} id="duration-limit" what="the chart shows" />
      </div>
      <ErrorBox error={grid.error} />
      {grid.loading && !grid.data ? <Loading what="Loading the durations" /> : null}
      {grid.data && !top.length ? <p class="empty">No finished task yet: nothing to chart.</p> : null}
      {top.length ? (
        <>
          <DurationPlot runs={series.runs} rows={top} />
          {sorted.filter((r) => r.count > 0).length > top.length ? (
            <p class="muted" id="duration-note">
              The chart shows the {top.length} slowest of {sorted.filter((r) => r.count > 0).length} tasks (by median duration); the table lists them all.
            </p>
          ) : null}
        </>
      ) : null}
      {grid.data ? (
        <table class="data" id="duration-table">
          <caption class="muted">Duration of each task over the last {series.runs.length} runs (finished instances only), slowest first</caption>
          <thead>
            <tr>
              <th>Task</th>
              <th class="num">Median</th>
              <th class="num">Max</th>
              <th class="num">Last</th>
              <th class="num">Runs counted</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((r) => (
              <tr key={r.task_id} data-task={r.task_id}>
                <td class="mono">{r.task_id}</td>
                <td class="num">{duration(r.median)}</td>
                <td class="num">{duration(r.max)}</td>
                <td class="num">{duration(r.last)}</td>
                <td class="num">{r.count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Runs

const RUN_TYPES = ["scheduled", "manual", "backfill", "experiment"];
const RUNS_PAGE = 50;

/** The runs of the DAG with `filters`, paged by `next_cursor`; `more()` loads the older page. */
function useRunPages(dagId, filters, tick) {
  const [state, setState] = useState({ items: [], next: null, loading: true, error: null });
  const generation = useRef(0);
  const key = JSON.stringify(filters);
  const fetchPage = (cursor) => get(`/api/v1/dags/${enc(dagId)}/runs` + query({ ...filters, limit: RUNS_PAGE, cursor }));
  const loadFirst = async (blank) => {
    const mine = ++generation.current;
    if (blank) setState({ items: [], next: null, loading: true, error: null });
    try {
      const page = await fetchPage(null);
      if (mine !== generation.current) return;
      const fresh = page.items;
      setState((s) => {
        if (blank || !s.items.length) return { items: fresh, next: page?.next_cursor || null, loading: false, error: null };
        // A live reload keeps the older pages already shown.
        const seen = new Set(fresh.map((r) => r.run_id));
        const older = s.items.slice(fresh.length).filter((r) => !seen.has(r.run_id));
        return { items: [...fresh, ...older], next: older.length ? s.next : page?.next_cursor || null, loading: false, error: null };
      });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ ...s, loading: false, error }));
    }
  };
  useEffect(() => {
    loadFirst(true);
  }, [dagId, key]);
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    loadFirst(false);
  }, [tick]);
  const more = async () => {
    if (!state.next) return;
    const mine = generation.current;
    setState((s) => ({ ...s, loading: true }));
    try {
      const page = await fetchPage(state.next);
      if (mine !== generation.current) return;
      setState((s) => {
        const seen = new Set(s.items.map((r) => r.run_id));
        return { items: [...s.items, ...page.items.filter((r) => !seen.has(r.run_id))], next: page?.next_cursor || null, loading: false, error: null };
      });
    } catch (error) {
      setState((s) => ({ ...s, loading: false, error }));
    }
  };
  return { ...state, more };
}

function RunFilters({ filters, setFilters, experiments }) {
  const set = (k) => (e) => setFilters({ ...filters, [k]: e.currentTarget.value });
  return (
    <div class="filters runs-filters" role="search">
      <label>
        State
        <select id="runs-state" value={filters.state} onChange={set("state")} data-tip="Show only the runs in this state">
          <option value="">any state</option>
          {RUN_STATES.map((s) => (
            <option key={s} value={s}>
              {stateInfo(s).symbol} {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        Type
        <select id="runs-type" value={filters.run_type} onChange={set("run_type")} data-tip="Show only the runs of this type">
          <option value="">any type</option>
          {RUN_TYPES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        Experiment
        <select id="runs-experiment" value={filters.experiment} onChange={set("experiment")} data-tip="Show only the runs of this experiment">
          <option value="">any</option>
          {experiments.map((e) => (
            <option key={e} value={e}>
              {e}
            </option>
          ))}
          {filters.experiment && !experiments.includes(filters.experiment) ? <option value={filters.experiment}>{filters.experiment}</option> : null}
        </select>
      </label>
      <label>
        Triggered by
        <input id="runs-triggered-by" type="search" value={filters.triggered_by} onChange={set("triggered_by")} placeholder="user name, then Enter" data-tip="Show only the runs triggered by this user (or scheduler)" />
      </label>
    </div>
  );
}

function RunRow({ run: r, picked, onPick }) {
  const href = `/runs/${enc(r.run_id)}`;
  const onClick = (e) => {
    if (e.target.closest("a, input, button, label")) return;
    navigate(href);
  };
  return (
    <tr class={`run-row clickable${picked ? " picked" : ""}`} data-run={r.run_id} data-state={r.state} onClick={onClick}>
      <td>
        <input type="checkbox" class="compare-pick" checked={picked} onChange={(e) => onPick(r.run_id, e.currentTarget.checked)} aria-label={`Pick ${r.run_id} to compare`} data-tip="Pick this run to compare" />
      </td>
      <td>
        <StateBadge state={r.state} />
      </td>
      <td>
        <Link href={href} class="mono run-link" data-tip={runTip(r)}>
          {r.run_id}
        </Link>
      </td>
      <td>{time(r.logical_date)}</td>
      <td>{r.run_type || "–"}</td>
      <td>
        <VersionTag version={r.version} />
      </td>
      <td>{r.experiment || <span class="muted">–</span>}</td>
      <td>{r.triggered_by || <span class="muted">–</span>}</td>
      <td class="note-cell">{r.note || ""}</td>
      <td class="num">{r.started_at ? duration(secondsBetween(r.started_at, r.ended_at)) + (r.ended_at ? "" : " …") : "–"}</td>
    </tr>
  );
}

function RunsTab({ dagId, tick }) {
  const [filters, setFilters] = useState({ state: "", run_type: "", experiment: "", triggered_by: "" });
  const [picked, setPicked] = useState([]);
  const pages = useRunPages(dagId, filters, tick);
  const experiments = useAsync(() => get(`/api/v1/dags/${enc(dagId)}/experiments`).then((a) => a.items).catch(() => []), [dagId]);
  const names = (experiments.data || []).map((e) => e?.name).filter(Boolean);
  const onPick = (id, on) => setPicked((xs) => (on ? [...xs.filter((x) => x !== id), id] : xs.filter((x) => x !== id)));
  const canCompare = picked.length >= 2 && picked.length <= 20;
  const compare = () => canCompare && navigate(`/compare${query({ dag_id: dagId })}&runs=${picked.map(enc).join(",")}`);
  return (
    <div id="runs-view" data-ready={!pages.loading || pages.items.length || pages.error ? "true" : "false"}>
      <div class="row tab-tools">
        <RunFilters filters={filters} setFilters={setFilters} experiments={names} />
        <span class="spacer" />
        <Button
          id="compare-open"
          primary
          disabled={!canCompare}
          tip={canCompare ? `Compare the ${picked.length} picked runs side by side` : picked.length > 20 ? "At most 20 runs can be compared" : "Pick 2 to 20 runs (the boxes on the left) to compare them"}
          onClick={compare}
        >
          Compare {picked.length ? `(${picked.length})` : ""}
        </Button>
        {picked.length ? (
          <Button id="compare-clear" tip="Unpick every run" onClick={() => setPicked([])}>
            Unpick
          </Button>
        ) : null}
      </div>
      <ErrorBox error={pages.error} />
      <table class="data" id="runs">
        <thead>
          <tr>
            <th>
              <span class="visually-hidden">Compare</span>
            </th>
            <th>State</th>
            <th>Run</th>
            <th>Logical date</th>
            <th>Type</th>
            <th>Version</th>
            <th>Experiment</th>
            <th>Triggered by</th>
            <th>Note</th>
            <th class="num">Duration</th>
          </tr>
        </thead>
        <tbody>
          {pages.items.map((r) => (
            <RunRow key={r.run_id} run={r} picked={picked.includes(r.run_id)} onPick={onPick} />
          ))}
          {!pages.items.length && !pages.loading ? (
            <tr>
              <td colSpan={10} class="empty-row">
                No run{filters.state || filters.run_type || filters.experiment || filters.triggered_by ? " matches these filters" : " yet"}.
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
      {pages.loading ? <Loading what="Loading runs" /> : null}
      {pages.next ? (
        <div class="pager">
          <Button id="runs-older" tip="Load the next page of older runs" disabled={pages.loading} onClick={pages.more}>
            Older ↓
          </Button>
        </div>
      ) : null}
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Versions

function sortVersions(list) {
  return [...list].sort((a, b) => String(b.created_at || "").localeCompare(String(a.created_at || "")));
}

function valueText(v) {
  if (v === undefined) return "–";
  if (v === null) return "null";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function FieldChanges({ fields }) {
  const entries = Object.entries(fields || {});
  if (!entries.length) return null;
  return (
    <table class="data diff-fields">
      <thead>
        <tr>
          <th>Field</th>
          <th>From</th>
          <th>To</th>
        </tr>
      </thead>
      <tbody>
        {entries.map(([name, pair]) => (
          <tr key={name} data-field={name}>
            <td class="mono">{name}</td>
            <td class="mono diff-from-value">{valueText(pair[0])}</td>
            <td class="mono diff-to-value">{valueText(pair[1])}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Task ids added or removed by a diff. */
function TaskIds({ ids, cls, symbol, title }) {
  if (!ids.length) return null;
  return (
    <div class={cls}>
      <h4>
        <span aria-hidden="true">{symbol} </span>
        {title} ({ids.length})
      </h4>
      <ul>
        {ids.map((id) => (
          <li key={id} class="mono">
            {id}
          </li>
        ))}
      </ul>
    </div>
  );
}

function DiffResult({ diff }) {
  const added = diff.tasks_added || [];
  const removed = diff.tasks_removed || [];
  const changed = diff.tasks_changed || [];
  const settings = diff.settings_changed || {};
  const nothing = !added.length && !removed.length && !changed.length && !Object.keys(settings).length;
  return (
    <div class="diff-result">
      {nothing ? <p class="empty">These versions have the same tasks and settings.</p> : null}
      <TaskIds ids={added} cls="diff-added" symbol="＋" title="Tasks added" />
      <TaskIds ids={removed} cls="diff-removed" symbol="−" title="Tasks removed" />
      {changed.length ? (
        <div class="diff-changed">
          <h4>
            <span aria-hidden="true">~ </span>Tasks changed ({changed.length})
          </h4>
          {changed.map((c) => (
            <div key={c.task_id} class="diff-task" data-task={c.task_id}>
              <h5 class="mono">
                {c.task_id}
                {c.plugin_changed ? <span class="badge plugin-changed"> plugin changed</span> : null}
              </h5>
              <FieldChanges fields={c.fields} />
            </div>
          ))}
        </div>
      ) : null}
      {Object.keys(settings).length ? (
        <div class="diff-settings">
          <h4>DAG settings changed</h4>
          <FieldChanges fields={settings} />
        </div>
      ) : null}
    </div>
  );
}

function VersionDiff({ dagId, versions }) {
  const [from, setFrom] = useState(versions[1]?.version || versions[0]?.version || "");
  const [to, setTo] = useState(versions[0]?.version || "");
  useEffect(() => {
    if (!versions.some((v) => v.version === to)) setTo(versions[0]?.version || "");
    if (!versions.some((v) => v.version === from)) setFrom(versions[1]?.version || versions[0]?.version || "");
  }, [versions.map((v) => v.version).join(",")]);
  const diff = useAsync(() => (from && to && from !== to ? get(`/api/v1/dags/${enc(dagId)}/versions/diff` + query({ from, to })) : Promise.resolve(null)), [dagId, from, to]);
  const option = (v) => (
    <option key={v.version} value={v.version}>
      {shortVersion(v.version)} — {time(v.created_at)}
      {v.is_active ? " — active" : ""}
    </option>
  );
  return (
    <section class="panel" id="versions-diff">
      <h2>Differences between two versions</h2>
      <div class="row">
        <label class="inline">
          From
          <select id="diff-from" value={from} onChange={(e) => setFrom(e.currentTarget.value)} data-tip="The older version">
            {versions.map(option)}
          </select>
        </label>
        <label class="inline">
          To
          <select id="diff-to" value={to} onChange={(e) => setTo(e.currentTarget.value)} data-tip="The newer version">
            {versions.map(option)}
          </select>
        </label>
      </div>
      <div id="diff" data-ready={diff.data || diff.error || from === to ? "true" : "false"}>
        <ErrorBox error={diff.error} />
        {from === to ? <p class="muted">Pick two different versions.</p> : null}
        {diff.loading && !diff.data && from !== to ? <Loading what="Comparing the versions" /> : null}
        {diff.data ? <DiffResult diff={diff.data} /> : null}
      </div>
    </section>
  );
}

function VersionRow({ dagId, v, canActivate, onActivated }) {
  const activate = async () => {
    const ok = await confirm({
      title: `Activate version ${shortVersion(v.version)}?`,
      body: (
        <div>
          <p>
            Version <code>{v.version}</code> becomes the active version of <strong>{dagId}</strong>: the schedule's next runs (and triggers without a version) run it.
          </p>
          <p>Runs already created keep the version they were created with.</p>
        </div>
      ),
      action: "Activate",
      danger: true,
    });
    if (!ok) return;
    try {
      const answer = await post(`/api/v1/dags/${enc(dagId)}/versions/${enc(v.version)}/activate`, {});
      toast(answer?.changed === false ? `Version ${shortVersion(v.version)} was already active` : `Version ${shortVersion(v.version)} is now active`, "success");
      onActivated();
    } catch (e) {
      toast(`Could not activate ${shortVersion(v.version)}: ${e.message}`, "error");
    }
  };
  const experiments = v.experiments || [];
  return (
    <tr class={`version${v.is_active ? " active" : ""}`} data-version={v.version} data-active={v.is_active ? "true" : "false"}>
      <td>
        <VersionTag version={v.version} active={v.is_active} />
      </td>
      <td>{v.is_active ? <span class="active-marker">★ active</span> : <span class="muted">–</span>}</td>
      <td>{time(v.created_at)}</td>
      <td>{v.origin || "–"}</td>
      <td>{v.uploaded_by || <span class="muted">–</span>}</td>
      <td>
        {experiments.length ? (
          <ul class="version-experiments">
            {experiments.map((e, i) => (
              <li key={i}>
                <strong>{e.name}</strong> <span class="muted">by {e.author || "–"}</span>
                {e.note ? <span class="note-text"> — {e.note}</span> : null}
              </li>
            ))}
          </ul>
        ) : (
          <span class="muted">–</span>
        )}
      </td>
      <td class="version-actions">
        <Link href={`/dags/${enc(dagId)}/code${query({ version: v.version })}`} class="btn btn-small code-link" data-tip="The source of this version and its pinned plugins">
          Code
        </Link>
        {canActivate && !v.is_active ? (
          <Button class="activate btn-small" tip={`Make ${shortVersion(v.version)} the active version: the schedule runs it (asks first)`} onClick={activate}>
            Activate
          </Button>
        ) : null}
      </td>
    </tr>
  );
}

function ExperimentList({ experiments }) {
  return (
    <section class="panel" id="experiments">
      <h2>Experiments</h2>
      {!experiments.length ? <p class="muted">No experiments: upload a bundle with an experiment name to try a version without activating it.</p> : null}
      {experiments.map((e) => (
        <div class="experiment" key={e.name} data-experiment={e.name}>
          <h3>{e.name}</h3>
          <ul>
            {sortVersions(e.versions || []).map((v, i) => (
              <li key={v.version + i} class="experiment-version">
                <VersionTag version={v.version} /> <span class="muted">by</span> {v.author || "–"} <span class="muted">· {time(v.created_at)}</span>
                {v.note ? <div class="note-text">{v.note}</div> : null}
              </li>
            ))}
          </ul>
        </div>
      ))}
    </section>
  );
}

function VersionsTab({ dagId, tick, onActivated }) {
  const me = useSession();
  const versions = useAsync(() => get(`/api/v1/dags/${enc(dagId)}/versions`).then((a) => sortVersions(a.items)), [dagId]);
  const experiments = useAsync(() => get(`/api/v1/dags/${enc(dagId)}/experiments`).then((a) => a.items), [dagId]);
  const list = versions.data || [];
  const activated = () => {
    versions.reload();
    onActivated?.();
  };
  return (
    <div id="versions-view" data-ready={versions.data || versions.error ? "true" : "false"}>
      <section class="panel" id="versions">
        <h2>Versions</h2>
        <ErrorBox error={versions.error} />
        {versions.loading && !versions.data ? <Loading what="Loading the versions" /> : null}
        {versions.data ? (
          <table class="data versions-table">
            <thead>
              <tr>
                <th>Version</th>
                <th>Active</th>
                <th>Created</th>
                <th>Origin</th>
                <th>Uploaded by</th>
                <th>Experiments</th>
                <th>Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((v) => (
                <VersionRow key={v.version} dagId={dagId} v={v} canActivate={atLeast("admin", me)} onActivated={activated} />
              ))}
            </tbody>
          </table>
        ) : null}
      </section>
      {list.length >= 2 ? <VersionDiff dagId={dagId} versions={list} /> : null}
      <ErrorBox error={experiments.error} />
      {experiments.data ? <ExperimentList experiments={experiments.data} /> : null}
    </div>
  );
}

// ---------------------------------------------------------------------------------------------
// Code

function CodeTab({ dag, dagId, params }) {
  const versions = sortVersions(dag.versions || []);
  const version = params?.get("version") || dag.active_version || versions[0]?.version || "";
  const code = useAsync(() => (version ? get(`/api/v1/dags/${enc(dagId)}/versions/${enc(version)}`) : Promise.resolve(null)), [dagId, version]);
  const plugins = Object.entries(code.data?.plugins || {});
  return (
    <div id="code-view" data-ready={code.data || code.error || !version ? "true" : "false"}>
      <div class="row tab-tools">
        <label class="inline">
          Version
          <select id="code-version" value={version} onChange={(e) => setParams({ version: e.currentTarget.value })} data-tip="The version whose source is shown">
            {!versions.some((v) => v.version === version) && version ? <option value={version}>{shortVersion(version)}</option> : null}
            {versions.map((v) => (
              <option key={v.version} value={v.version}>
                {shortVersion(v.version)} — {time(v.created_at)}
                {v.is_active ? " — active" : ""}
              </option>
            ))}
          </select>
        </label>
        {code.data?.file ? <span class="mono muted">{code.data.file}</span> : null}
      </div>
      <ErrorBox error={code.error} />
      {code.loading && !code.data ? <Loading what="Loading the source" /> : null}
      {code.data ? (
        <>
          <pre id="code" class="code-block">
            {code.data.source ?? ""}
          </pre>
          <section class="panel" id="code-plugins">
            <h2>Pinned plugins</h2>
            {plugins.length ? (
              <table class="data">
                <thead>
                  <tr>
                    <th>Path</th>
                    <th>Plugin (content id)</th>
                  </tr>
                </thead>
                <tbody>
                  {plugins.map(([path, id]) => (
                    <tr key={path} class="code-plugin">
                      <td class="mono">{path}</td>
                      <td>
                        <Link href={`/plugins${query({ id })}`} class="mono" data-tip={`The plugin ${id}: its languages and the DAG versions that use it`}>
                          {id}
                        </Link>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : (
              <p class="muted">No plugins pinned.</p>
            )}
          </section>
        </>
      ) : null}
    </div>
  );
}
