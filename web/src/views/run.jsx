// One run: its state, conf, note, version, experiment, who triggered it and when; its task
// instances (a mapped task as one row with its counts), each opening the task panel; a picker to
// compare it with another run of the same DAG; clear and mark for the whole run.
import "./panels.css";
import { useMemo, useState } from "preact/hooks";
import { enc, get, query } from "../api.js";
import { Button, ErrorBox, Json, Loading, StateBadge, confirm, useAsync, useThrottled } from "../components.jsx";
import { duration, secondsBetween, time } from "../format.js";
import { useLive } from "../live.js";
import { Link, navigate, setParams } from "../router.jsx";
import { atLeast, useSession } from "../session.js";
import { ClearSummary, TaskPanel, clearTargets, runAction } from "./task.jsx";

/** One row per unmapped task, one per mapped task (its parent's state and its instances' counts). */
function groupInstances(instances) {
  const byTask = new Map();
  for (const ti of instances) {
    let g = byTask.get(ti.task_id);
    if (!g) {
      g = { task_id: ti.task_id, parent: null, children: [] };
      byTask.set(ti.task_id, g);
    }
    if (ti.map_index >= 0) g.children.push(ti);
    else g.parent = ti;
  }
  return [...byTask.values()].map((g) => {
    const counts = {};
    for (const c of g.children) counts[c.state] = (counts[c.state] || 0) + 1;
    const base = g.parent || g.children[0];
    const starts = g.children.map((c) => c.started_at).filter(Boolean).sort();
    const ends = g.children.map((c) => c.ended_at).filter(Boolean).sort();
    return {
      task_id: g.task_id,
      mapped: g.children.length > 0,
      instances: g.children.length,
      counts,
      state: base?.state || "none",
      try_number: g.children.length ? Math.max(0, ...g.children.map((c) => c.try_number)) : base?.try_number,
      started_at: g.parent?.started_at || starts[0] || null,
      ended_at: g.parent?.ended_at || (ends.length === g.children.length ? ends[ends.length - 1] : null),
      reason: base?.reason,
    };
  });
}

function RunActions({ run, onDone }) {
  const instances = run.tasks || [];
  const running = instances.filter((ti) => ti.state === "running" && ti.try_number > 0);
  const clear = async (onlyFailed) => {
    const targets = clearTargets(instances, null, { taskIds: [], mapIndex: null, downstream: false, upstream: false, onlyFailed });
    const ok = await confirm({
      title: onlyFailed ? "Clear the failed tasks of this run?" : "Clear every task of this run?",
      body: (
        <ClearSummary
          targets={targets}
          graphKnown
          extra={<p>{onlyFailed ? "Only the instances that failed or are upstream_failed are cleared; the others keep their state." : "Every task instance of the run is reset, successful ones too: the whole run runs again."}</p>}
        />
      ),
      action: running.length ? "Kill and clear" : "Clear",
      danger: true,
    });
    if (!ok) return;
    if (await runAction(`/api/v1/runs/${enc(run.run_id)}/clear`, { task_ids: [], only_failed: onlyFailed, downstream: false, upstream: false })) onDone();
  };
  const mark = async (state) => {
    const unfinished = instances.filter((ti) => !["success", "failed", "skipped", "upstream_failed", "removed"].includes(ti.state));
    const ok = await confirm({
      title: `Mark the run ${state}?`,
      body: (
        <div>
          <p>
            Run <code>{run.run_id}</code> becomes <strong>{state}</strong> by hand.
            {unfinished.length ? ` Its ${unfinished.length} task instance${unfinished.length === 1 ? " that has" : "s that have"} not finished become ${state}.` : " Every task of it has finished: their states stay."}
          </p>
          {running.map((ti) => (
            <p class="confirm-kill" key={ti.task_id + ti.map_index}>
              <strong>
                ⚠ The running try {ti.try_number} of <code>{ti.map_index >= 0 ? `${ti.task_id} [${ti.map_index}]` : ti.task_id}</code> will be killed.
              </strong>
            </p>
          ))}
        </div>
      ),
      action: `Mark run ${state}`,
      danger: true,
    });
    if (!ok) return;
    if (await runAction(`/api/v1/runs/${enc(run.run_id)}/mark`, { state })) onDone();
  };
  return (
    <div class="run-actions" aria-label="Run actions">
      <Button id="run-clear-failed" tip="Clear the failed and upstream_failed tasks of this run: they run again (asks first)" onClick={() => clear(true)}>
        ↻ Clear failed
      </Button>
      <Button id="run-clear-all" tip="Clear every task of this run: the whole run runs again, running tries are killed (asks first)" onClick={() => clear(false)}>
        ↻ Clear all
      </Button>
      <Button id="run-mark-success" tip="Mark the run and its unfinished tasks success (asks first)" onClick={() => mark("success")}>
        ✓ Mark success
      </Button>
      <Button id="run-mark-failed" tip="Mark the run and its unfinished tasks failed (asks first)" onClick={() => mark("failed")}>
        ✕ Mark failed
      </Button>
    </div>
  );
}

function CompareWith({ run }) {
  const [other, setOther] = useState("");
  const runs = useAsync(() => get(`/api/v1/dags/${enc(run.dag_id)}/runs` + query({ limit: 100 })), [run.dag_id]);
  const items = (runs.data?.items || []).filter((r) => r.run_id !== run.run_id);
  const go = () => other && navigate(`/compare?runs=${enc(run.run_id)},${enc(other)}`);
  return (
    <section class="panel">
      <h2>Compare with another run</h2>
      <ErrorBox error={runs.error} />
      <div class="compare-with">
        <select id="compare-with" value={other} onChange={(e) => setOther(e.currentTarget.value)} aria-label="The run to compare with" data-tip="A run of the same DAG to put side by side with this one">
          <option value="">{runs.loading && !runs.data ? "loading runs…" : items.length ? "choose a run…" : "no other run of this DAG"}</option>
          {items.map((r) => (
            <option key={r.run_id} value={r.run_id}>
              {r.run_id} — {r.state}
              {r.experiment ? ` — experiment ${r.experiment}` : ""} — {time(r.created_at)}
            </option>
          ))}
        </select>
        <Button id="compare-go" primary disabled={!other} tip="Open both runs side by side: state, duration, fuel, memory, metrics, output per task" onClick={go}>
          Compare
        </Button>
      </div>
    </section>
  );
}

export function RunPage({ runId, params }) {
  const me = useSession();
  const canAct = atLeast("author", me);
  const run = useAsync(() => get(`/api/v1/runs/${enc(runId)}`), [runId]);
  const reload = useThrottled(() => run.reload(), 300);
  useLive((name, d) => (name === "run" || name === "task") && d.run_id === runId, reload);
  const [stateFilter, setStateFilter] = useState("");
  const openTask = params?.get("task") || null;
  const openMap = params?.get("map_index");
  const rows = useMemo(() => groupInstances(run.data?.tasks || []), [run.data]);
  const shown = stateFilter ? rows.filter((r) => r.state === stateFilter || r.counts[stateFilter]) : rows;
  const states = useMemo(() => [...new Set((run.data?.tasks || []).map((t) => t.state))].sort(), [run.data]);

  if (!runId)
    return (
      <main class="page" id="run-page" data-ready="true">
        <h1>No run given</h1>
      </main>
    );
  if (!run.data)
    return (
      <main class="page" id="run-page" data-ready={run.error ? "true" : "false"}>
        <h1 class="mono">{runId}</h1>
        {run.loading ? <Loading what="Loading the run" /> : <ErrorBox error={run.error} />}
      </main>
    );
  const r = run.data;
  const open = (taskId) => setParams({ task: taskId, map_index: null });
  const dagHref = `/dags/${enc(r.dag_id)}`;
  return (
    <main class="page" id="run-page" data-ready="true" data-run-id={r.run_id} data-dag-id={r.dag_id}>
      <div class="page-head">
        <h1 class="mono">{r.run_id}</h1>
        <span id="run-state" data-state={r.state}>
          <StateBadge state={r.state} />
        </span>
        <span class="muted">
          of{" "}
          <Link href={dagHref} class="mono" data-tip="The DAG's page">
            {r.dag_id}
          </Link>
        </span>
        <span class="spacer" />
        <Link href={`${dagHref}/graph?run=${enc(r.run_id)}`} data-tip="This run in the DAG's graph" id="run-open-graph">
          Graph
        </Link>
        <Link href={`${dagHref}/grid?run=${enc(r.run_id)}`} data-tip="This run in the DAG's grid of runs" id="run-open-grid">
          Grid
        </Link>
        <Link href={`${dagHref}/gantt?run=${enc(r.run_id)}`} data-tip="This run's tries on a time line" id="run-open-gantt">
          Gantt
        </Link>
      </div>
      <ErrorBox error={run.error} />
      {canAct ? (
        <div class="panel">
          <RunActions run={r} onDone={() => run.reload()} />
        </div>
      ) : null}
      <div class="run-layout">
        <div>
          <section class="panel" id="run-details">
            <h2>Run</h2>
            <dl class="kv">
              <dt>Type</dt>
              <dd id="run-type">{r.run_type}</dd>
              <dt>Version</dt>
              <dd>
                <Link href={`${dagHref}/code?version=${enc(r.version)}`} class="mono" id="run-version" data-tip="The DAG version this run runs: its source">
                  {r.version}
                </Link>
              </dd>
              <dt>Experiment</dt>
              <dd id="run-experiment">{r.experiment || <span class="muted">–</span>}</dd>
              <dt>Triggered by</dt>
              <dd id="run-triggered-by">{r.triggered_by}</dd>
              <dt>Logical date</dt>
              <dd>{time(r.logical_date)}</dd>
              {r.interval_start ? (
                <>
                  <dt>Interval</dt>
                  <dd>
                    {time(r.interval_start)} → {time(r.interval_end)}
                  </dd>
                </>
              ) : null}
              <dt>Created</dt>
              <dd>{time(r.created_at)}</dd>
              <dt>Started</dt>
              <dd>{time(r.started_at)}</dd>
              <dt>Ended</dt>
              <dd>{time(r.ended_at)}</dd>
              <dt>Duration</dt>
              <dd>{r.started_at ? duration(secondsBetween(r.started_at, r.ended_at)) : "–"}</dd>
              <dt>Plugins</dt>
              <dd>{(r.plugin_ids || []).length}</dd>
            </dl>
            <h3>Note</h3>
            {r.note ? (
              <p class="note-text" id="run-note">
                {r.note}
              </p>
            ) : (
              <p class="muted" id="run-note">
                No note.
              </p>
            )}
            <h3>Conf</h3>
            <div id="run-conf">
              <Json value={r.conf} />
            </div>
          </section>
          <CompareWith run={r} />
        </div>
        <section class="panel">
          <div class="row">
            <h2>Task instances</h2>
            <span class="spacer" />
            <label class="inline">
              State{" "}
              <select id="run-tasks-state" value={stateFilter} onChange={(e) => setStateFilter(e.currentTarget.value)} data-tip="Show only the tasks in this state">
                <option value="">any</option>
                {states.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <table class="data" id="run-tasks">
            <thead>
              <tr>
                <th>Task</th>
                <th>State</th>
                <th class="num">Try</th>
                <th>Started</th>
                <th>Duration</th>
                <th>Reason</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((row) => (
                <tr
                  key={row.task_id}
                  class={`ti-row clickable${openTask === row.task_id ? " open" : ""}`}
                  data-task={row.task_id}
                  data-state={row.state}
                  tabIndex={0}
                  onClick={() => open(row.task_id)}
                  onKeyDown={(e) => e.key === "Enter" && open(row.task_id)}
                  data-tip={`Open ${row.task_id}: its tries, logs, output and actions`}
                >
                  <td class="mono">
                    {row.task_id}
                    {row.mapped ? <span class="muted"> [{row.instances}]</span> : null}
                  </td>
                  <td>
                    <StateBadge state={row.state} />
                    {row.mapped ? (
                      <span class="state-counts">
                        {Object.entries(row.counts).map(([s, n]) => (
                          <span key={s} class="state-count">
                            <StateBadge state={s} compact /> {n}
                          </span>
                        ))}
                      </span>
                    ) : null}
                  </td>
                  <td class="num">{row.try_number ?? "–"}</td>
                  <td>{time(row.started_at)}</td>
                  <td>{row.started_at ? duration(secondsBetween(row.started_at, row.ended_at)) : "–"}</td>
                  <td class="muted">{row.reason || ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {!shown.length ? <p class="empty">No task instance{stateFilter ? " in this state" : ""}.</p> : null}
        </section>
      </div>
      {openTask ? <TaskPanel runId={r.run_id} taskId={openTask} mapIndex={openMap === null || openMap === undefined ? undefined : Number(openMap)} onClose={() => setParams({ task: null, map_index: null })} /> : null}
    </main>
  );
}
