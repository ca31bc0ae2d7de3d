// Runs of one DAG side by side (`/compare?runs=A,B`): per task instance, each run's state, tries,
// duration, fuel, peak memory, plugin, metrics and output; rows whose outputs differ are marked.
import "./panels.css";
import { Fragment } from "preact";
import { useMemo, useState } from "preact/hooks";
import { enc, get, query } from "../api.js";
import { ErrorBox, Json, Loading, StateBadge, Tip, useAsync, useThrottled } from "../components.jsx";
import { bytes, duration, fuel, shortId, time } from "../format.js";
import { useLive } from "../live.js";
import { Link } from "../router.jsx";
import { instanceLabel } from "./task.jsx";

const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

function metricText(v) {
  if (v === undefined) return "–";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** Whether the values of a figure are not all the same across the runs that have it. */
function varies(values) {
  const present = values.filter((v) => v !== undefined && v !== null);
  return present.length > 1 && present.some((v) => !same(v, present[0]));
}

function Cell({ inst, diff, metricNames }) {
  if (!inst) return <span class="muted">no such instance in this run</span>;
  const mark = (key, content) => <span class={diff[key] ? "cmp-diff" : ""}>{content}</span>;
  return (
    <div class="cmp-cell">
      <span>
        <StateBadge state={inst.state} />
      </span>
      <div class="figs">
        <span>tries</span>
        {mark("tries", inst.tries)}
        <span>duration</span>
        {mark("duration_s", duration(inst.duration_s))}
        <span>fuel</span>
        {mark("fuel_used", <Tip tip={inst.fuel_used === null || inst.fuel_used === undefined ? "no fuel recorded" : `${inst.fuel_used.toLocaleString()} units`}>{fuel(inst.fuel_used)}</Tip>)}
        <span>peak memory</span>
        {mark("peak_memory", bytes(inst.peak_memory))}
        <span>plugin</span>
        {mark(
          "plugin_id",
          <Tip tip={inst.plugin_id || "no plugin recorded"} class="mono">
            {shortId(inst.plugin_id)}
          </Tip>,
        )}
        {metricNames.map((m) => (
          <Fragment key={m}>
            <span>
              <code>{m}</code>
            </span>
            <span class={diff["metric:" + m] ? "cmp-diff" : ""}>
              {metricText(inst.metrics?.[m])}
            </span>
          </Fragment>
        ))}
      </div>
      {inst.output === null || inst.output === undefined ? <span class="muted">no output</span> : <Json value={inst.output} />}
    </div>
  );
}

function CompareTable({ data, onlyDiffering }) {
  const rows = data.tasks.map((t) => {
    const per = t.per_run || [];
    const metricNames = [...new Set(per.flatMap((p) => Object.keys(p?.metrics || {})))].sort();
    const diff = {};
    for (const key of ["tries", "duration_s", "fuel_used", "peak_memory", "plugin_id", "state"]) diff[key] = varies(per.map((p) => p?.[key]));
    for (const m of metricNames) diff["metric:" + m] = varies(per.map((p) => p?.metrics?.[m]));
    const missing = per.some((p) => !p);
    return { t, per, metricNames, diff, missing, anyDiff: t.output_differs || missing || Object.values(diff).some(Boolean) };
  });
  const shown = onlyDiffering ? rows.filter((r) => r.anyDiff) : rows;
  return (
    <div class="compare-wrap">
      <table class="data" id="compare">
        <thead>
          <tr>
            <th>Task</th>
            {data.runs.map((r) => (
              <th key={r.run_id} data-run={r.run_id}>
                <div class="run-head-cell">
                  <Link href={`/runs/${enc(r.run_id)}`} class="mono">
                    {r.run_id}
                  </Link>
                  <span>
                    <StateBadge state={r.state} />
                  </span>
                  <span class="muted">
                    version <span class="mono">{shortId(r.version)}</span>
                    {r.experiment ? ` · experiment ${r.experiment}` : ""}
                  </span>
                  <span class="muted">{time(r.started_at || r.created_at)}</span>
                  {r.note ? <span class="note-text">{r.note}</span> : null}
                </div>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {shown.map(({ t, per, metricNames, diff, missing }) => (
            <tr key={t.task_id + "\n" + t.map_index} class={`compare-row${t.output_differs ? " differs" : ""}`} data-task={t.task_id} data-map-index={t.map_index} data-differs={t.output_differs ? "true" : "false"}>
              <td>
                <span class="mono">{instanceLabel(t.task_id, t.map_index)}</span>
                {t.output_differs ? (
                  <span class="differs-label" data-tip="The outputs of this task are not the same in every run">
                    differs
                  </span>
                ) : null}
                {missing ? <div class="muted">not in every run</div> : null}
              </td>
              {data.runs.map((r, i) => (
                <td key={r.run_id} data-run={r.run_id}>
                  <Cell inst={per[i]} diff={diff} metricNames={metricNames} />
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {!shown.length ? <p class="empty">{onlyDiffering ? "Nothing differs between these runs." : "These runs have no task instances."}</p> : null}
    </div>
  );
}

export function ComparePage({ params }) {
  const ids = useMemo(() => (params?.get("runs") || "").split(",").map((s) => s.trim()).filter(Boolean), [params?.get("runs")]);
  const [onlyDiffering, setOnlyDiffering] = useState(false);
  const cmp = useAsync(async () => {
    if (ids.length < 2) return null;
    const first = await get(`/api/v1/runs/${enc(ids[0])}`);
    return get(`/api/v1/dags/${enc(first.dag_id)}/compare` + query({ runs: ids.join(",") }));
  }, [ids.join(",")]);
  const reload = useThrottled(() => cmp.reload(), 1000);
  useLive((name, d) => (name === "run" || name === "task") && ids.includes(d.run_id), reload);

  if (ids.length < 2)
    return (
      <main class="page" id="compare-page" data-ready="true">
        <h1>Compare runs</h1>
        <p>
          Pick two runs or more of one DAG in its <strong>Runs</strong> tab, or open a run and choose "Compare with another run". The address is{" "}
          <code>/compare?runs=A,B</code>.
        </p>
      </main>
    );
  const data = cmp.data;
  const differing = data ? data.tasks.filter((t) => t.output_differs).length : 0;
  return (
    <main class="page" id="compare-page" data-ready={data || cmp.error ? "true" : "false"}>
      <div class="page-head">
        <h1>Compare {ids.length} runs</h1>
        {data ? (
          <span class="muted">
            of{" "}
            <Link href={`/dags/${enc(data.dag_id)}/runs`} class="mono">
              {data.dag_id}
            </Link>{" "}
            · {data.tasks.length} task instances, {differing} with different outputs
          </span>
        ) : null}
        <span class="spacer" />
        <label class="check" data-tip="Hide the tasks whose state, figures and output are the same in every run">
          <input type="checkbox" id="compare-only-differing" checked={onlyDiffering} onChange={(e) => setOnlyDiffering(e.currentTarget.checked)} /> Only what differs
        </label>
      </div>
      <ErrorBox error={cmp.error} />
      {!data && cmp.loading ? <Loading what="Comparing the runs" /> : null}
      {data ? <CompareTable data={data} onlyDiffering={onlyDiffering} /> : null}
      {data ? <p class="muted">Bold figures are not the same in every run; durations, fuel and memory are those of each instance's latest try.</p> : null}
    </main>
  );
}
