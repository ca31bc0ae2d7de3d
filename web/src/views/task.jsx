// The task instance side panel: the instance's state, every try (outcome, times, plugin, fuel,
// peak memory, wall time), the selected try's log (streamed while the try runs), output and
// metrics, and the actions clear / mark success / mark failed, each asked first with what will
// happen. A mapped task opened without a map index lists its instances to pick one.
import "./panels.css";
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";
import { download, enc, get, post, query, streamText } from "../api.js";
import { Button, ErrorBox, Json, Loading, StateBadge, StateSquare, Tip, confirm, toast, useAsync, useThrottled } from "../components.jsx";
import { bytes, duration, fuel, secondsBetween, shortId, time } from "../format.js";
import { useLive } from "../live.js";
import { Link } from "../router.jsx";
import { atLeast, useSession } from "../session.js";

/** `task` or `task [3]`. */
export function instanceLabel(taskId, mapIndex) {
  return mapIndex !== null && mapIndex !== undefined && mapIndex >= 0 ? `${taskId} [${mapIndex}]` : taskId;
}

/** How a try ended, as symbol + words (never colour alone). */
const OUTCOMES = {
  success: { symbol: "✓", label: "success", cls: "ok" },
  killed: { symbol: "⊘", label: "killed", cls: "killed", tip: "Stopped from outside: a clear or a mark killed this try" },
  interrupted: { symbol: "⏸", label: "interrupted", cls: "killed", tip: "Its lease expired before it ended: the worker stopped or vanished" },
  rescheduled: { symbol: "◷", label: "rescheduled", cls: "wait", tip: "A sensor poked and was not done: it pokes again later (not a failure)" },
  fuel_exhausted: { symbol: "⛽", label: "fuel exhausted", cls: "bad" },
  memory_limit: { symbol: "▤", label: "memory limit", cls: "bad" },
  timeout: { symbol: "⌛", label: "timed out", cls: "bad" },
  exit_code: { symbol: "✕", label: "exit code", cls: "bad" },
  trap: { symbol: "✕", label: "trap", cls: "bad" },
  output_too_large: { symbol: "✕", label: "output too large", cls: "bad" },
  invalid_result: { symbol: "✕", label: "invalid result", cls: "bad" },
  sensor_timeout: { symbol: "⌛", label: "sensor timed out", cls: "bad" },
  trigger_failed: { symbol: "✕", label: "trigger failed", cls: "bad" },
  host_error: { symbol: "⚠", label: "host error", cls: "bad" },
};

export function OutcomeBadge({ outcome }) {
  if (!outcome)
    return (
      <span class="outcome outcome-running" data-outcome="running" data-tip="This try has not ended yet">
        <span aria-hidden="true">▶</span> running
      </span>
    );
  const info = OUTCOMES[outcome] || { symbol: "✕", label: outcome.replace(/_/g, " "), cls: "bad" };
  return (
    <span class={`outcome outcome-${info.cls}`} data-outcome={outcome} data-tip={info.tip || `Outcome: ${outcome}`}>
      <span aria-hidden="true">{info.symbol}</span> {info.label}
    </span>
  );
}

/** A content id shown short, in full in its tooltip, with a copy button. */
export function CopyId({ id }) {
  if (!id) return <span class="muted">–</span>;
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(id);
      toast("Copied " + id, "success");
    } catch {
      toast("Could not copy: the browser refused the clipboard", "error");
    }
  };
  return (
    <span class="copy-id">
      <Tip tip={id} class="mono">
        {shortId(id)}
      </Tip>
      <Button class="btn-icon btn-copy" tip={`Copy the full id ${id}`} onClick={copy}>
        ⧉
      </Button>
    </span>
  );
}

const FAILED = new Set(["failed", "upstream_failed"]);

/** Task ids reached from `ids` along the DAG's edges (downstream and/or upstream), ids included. */
export function closure(tasks, ids, downstream, upstream) {
  const up = new Map(tasks.map((t) => [t.task_id, t.upstream || []]));
  const down = new Map(tasks.map((t) => [t.task_id, []]));
  for (const t of tasks) for (const u of t.upstream || []) down.get(u)?.push(t.task_id);
  const seen = new Set(ids);
  const walk = (edges) => {
    const stack = [...ids];
    while (stack.length) {
      const id = stack.pop();
      for (const next of edges.get(id) || []) {
        if (!seen.has(next)) {
          seen.add(next);
          stack.push(next);
        }
      }
    }
  };
  if (downstream) walk(down);
  if (upstream) walk(up);
  return seen;
}

/** The task list of a run's version (for saying what a clear touches), or null when unknown. */
const graphs = new Map();
export async function versionTasks(dagId, version) {
  const key = dagId + "\n" + version;
  if (!graphs.has(key)) {
    graphs.set(
      key,
      get(`/api/v1/dags/${enc(dagId)}/versions/${enc(version)}`)
        .then((spec) => spec.tasks || null)
        .catch(() => {
          graphs.delete(key);
          return null;
        }),
    );
  }
  return graphs.get(key);
}

/** A list of names, cut after `max`. */
export function NameList({ names, max = 12 }) {
  const shown = names.slice(0, max);
  return (
    <span class="name-list">
      {shown.map((n, i) => (
        <span key={n}>
          {i ? ", " : ""}
          <code>{n}</code>
        </span>
      ))}
      {names.length > max ? ` and ${names.length - max} more` : ""}
    </span>
  );
}

/**
 * The instances a clear would touch, as the scheduler picks them: the closure of `taskIds`, minus
 * removed ones, only failed ones with `onlyFailed`, one mapped instance with `mapIndex`.
 */
export function clearTargets(instances, graphTasks, { taskIds, mapIndex, downstream, upstream, onlyFailed }) {
  let selected = null;
  if (!taskIds.length) selected = null;
  else if (graphTasks) selected = closure(graphTasks, taskIds, downstream, upstream);
  else selected = new Set(taskIds);
  return instances.filter((ti) => {
    if (ti.state === "removed") return false;
    if (selected && !selected.has(ti.task_id)) return false;
    if (onlyFailed && !FAILED.has(ti.state)) return false;
    if (mapIndex !== null && mapIndex !== undefined && taskIds.includes(ti.task_id) && ti.map_index >= 0 && ti.map_index !== mapIndex) return false;
    return true;
  });
}

/** What a clear will do, in words, for its confirmation. */
export function ClearSummary({ targets, graphKnown, extra }) {
  // A mapped task's parent is "running" while its instances run, with no try of its own to kill.
  const running = targets.filter((ti) => ti.state === "running" && ti.try_number > 0);
  // A mapped task's parent settles again with its cleared instances: name the instances.
  const withChildren = new Set(targets.filter((ti) => ti.map_index >= 0).map((ti) => ti.task_id));
  const named = targets.filter((ti) => ti.map_index >= 0 || !withChildren.has(ti.task_id));
  const names = [...new Set(named.map((ti) => (ti.map_index >= 0 ? instanceLabel(ti.task_id, ti.map_index) : ti.task_id)))];
  return (
    <div class="confirm-clear">
      {targets.length ? (
        <p>
          {named.length === 1 ? "This task instance is reset and runs again: " : `These ${named.length} task instances are reset and run again: `}
          <NameList names={names} />.
        </p>
      ) : (
        <p>No task instance matches: nothing will run again.</p>
      )}
      {extra}
      {!graphKnown ? <p class="muted">(The DAG's graph could not be read, so tasks reached through it are not listed; the server picks them.)</p> : null}
      {running.map((ti) => (
        <p class="confirm-kill" key={ti.task_id + ti.map_index}>
          <strong>
            ⚠ The running try {ti.try_number} of <code>{instanceLabel(ti.task_id, ti.map_index)}</code> will be killed.
          </strong>
        </p>
      ))}
      <p class="muted">Its tries so far stay in the history; the next try gets the next number.</p>
    </div>
  );
}

/** Shows an action's answer (`{action_id, result}`) or its error in a toast. */
export async function runAction(path, body) {
  try {
    const done = await post(path, body);
    toast(`${done.result || "done"} (action ${done.action_id})`, "success");
    return done;
  } catch (e) {
    toast(e.status === 403 ? `Refused: ${e.message}` : e.message, "error");
    return null;
  }
}

/** The log of one try: streamed while it runs (kept at the bottom while you are), read once when it has ended. */
function TryLog({ runId, taskId, mapIndex, tryRow, onEnded }) {
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const [status, setStatus] = useState("loading"); // loading | live | done
  const [atBottom, setAtBottom] = useState(true);
  const pre = useRef(null);
  const stick = useRef(true);
  const shownKey = useRef(null);
  const running = !tryRow.outcome && !tryRow.ended_at;
  const n = tryRow.try_number;
  const key = `${runId}\n${taskId}\n${mapIndex}\n${n}`;
  const base = `/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/tries/${n}/log`;
  const mi = mapIndex >= 0 ? mapIndex : undefined;
  const endedRef = useRef(onEnded);
  endedRef.current = onEnded;

  useEffect(() => {
    const controller = new AbortController();
    if (shownKey.current !== key) {
      shownKey.current = key;
      setText("");
      stick.current = true;
      setAtBottom(true);
    }
    setError(null);
    const readAll = async () => {
      const chunk = await get(base + query({ map_index: mi, offset: 0 }), { signal: controller.signal });
      if (!controller.signal.aborted) {
        setText(chunk.text || "");
        setStatus(chunk.complete ? "done" : "live");
      }
      return chunk;
    };
    (async () => {
      try {
        if (!running) {
          setStatus("loading");
          await readAll();
          return;
        }
        setStatus("live");
        let first = true;
        await streamText(
          base + query({ map_index: mi, follow: true }),
          (chunk) => {
            if (controller.signal.aborted) return;
            if (first) {
              // The stream starts with the whole log so far.
              first = false;
              setText(chunk);
            } else if (chunk) setText((t) => t + chunk);
          },
          controller.signal,
        );
        if (controller.signal.aborted) return;
        // The try ended: read the log whole, in case the stream missed its tail.
        await readAll();
        endedRef.current?.();
      } catch (e) {
        if (!controller.signal.aborted) {
          setError(e);
          setStatus("done");
        }
      }
    })();
    return () => controller.abort();
  }, [key, running]);

  useLayoutEffect(() => {
    const el = pre.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [text]);

  const onScroll = () => {
    const el = pre.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < 12;
    stick.current = bottom;
    if (bottom !== atBottom) setAtBottom(bottom);
  };
  const toEnd = () => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
    stick.current = true;
    setAtBottom(true);
  };

  return (
    <section class="task-log-box" aria-label={`Log of try ${n}`}>
      <div class="row log-head">
        <h3>Log of try {n}</h3>
        {status === "live" ? (
          <span class="live-dot" data-tip="Streamed as the try writes it, until the try ends" id="task-log-live">
            <span aria-hidden="true">●</span> live
          </span>
        ) : null}
        {status === "loading" ? <span class="muted">loading…</span> : null}
        <span class="spacer" />
        {!atBottom ? (
          <Button class="btn-small" tip="Scroll to the end of the log and keep following it" onClick={toEnd} id="task-log-end">
            ↓ Follow the end
          </Button>
        ) : null}
      </div>
      <ErrorBox error={error} />
      <pre id="task-log" class="log" ref={pre} onScroll={onScroll} tabIndex={0} data-try={n} data-status={status} aria-live="off">
        {text}
      </pre>
      {!text && status !== "loading" ? <p class="muted log-empty">{running ? "Nothing written yet." : "This try wrote nothing to its log."}</p> : null}
    </section>
  );
}

function Figure({ label, tip, children }) {
  return (
    <div class="figure">
      <dt>
        <Tip tip={tip}>{label}</Tip>
      </dt>
      <dd>{children}</dd>
    </div>
  );
}

function TryDetails({ t }) {
  const running = !t.outcome && !t.ended_at;
  return (
    <dl class="figures">
      <Figure label="Outcome" tip="How the try ended (the sandbox's name for it)">
        <OutcomeBadge outcome={t.outcome} />
      </Figure>
      <Figure label="Queued" tip="When the instance was queued for this try">
        {time(t.queued_at)}
      </Figure>
      <Figure label="Started" tip="When a worker started the try">
        {time(t.started_at)}
      </Figure>
      <Figure label="Ended" tip="When the try ended">
        {running ? "still running" : time(t.ended_at)}
      </Figure>
      {running && t.progress !== null && t.progress !== undefined ? (
        <Figure label="Progress" tip="What the running plugin last reported of its progress (ABI v2 host.progress)">
          <span class="try-progress" id="try-progress">
            <progress max="1" value={t.progress} /> <span class="num">{Math.round(t.progress * 100)}%</span>{" "}
            <span class="muted">{t.progress_message}</span>
          </span>
        </Figure>
      ) : null}
      <Figure label="Duration" tip="From its start to its end (to now while it runs)">
        {duration(secondsBetween(t.started_at, t.ended_at))}
      </Figure>
      <Figure label="Wall time" tip="Time the plugin spent in the sandbox, as the worker measured it">
        {t.wall_us !== null && t.wall_us !== undefined ? duration(t.wall_us / 1e6) : "–"}
      </Figure>
      <Figure label="Fuel used" tip="WebAssembly fuel (instructions, roughly) the try spent">
        <span class="num">{fuel(t.fuel_used)}</span>
        {t.fuel_used !== null && t.fuel_used !== undefined ? <span class="muted"> ({t.fuel_used.toLocaleString()})</span> : null}
      </Figure>
      <Figure label="Peak memory" tip="The most linear memory the plugin held">
        {bytes(t.peak_memory)}
      </Figure>
      <Figure label="Plugin" tip="The content id of the plugin this try ran">
        <CopyId id={t.plugin_id} />
      </Figure>
      {t.message ? (
        <Figure label="Message" tip="What the try said when it ended">
          <span class="try-message">{t.message}</span>
        </Figure>
      ) : null}
    </dl>
  );
}

/** The files a try left in /out, each with its size, hash and a download. */
function Artifacts({ runId, taskId, mapIndex, tryNumber, reloadKey }) {
  const path = `/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/artifacts`;
  const list = useAsync(() => get(path + query({ map_index: mapIndex >= 0 ? mapIndex : undefined })), [runId, taskId, mapIndex, reloadKey]);
  const rows = (list.data?.items || []).filter((a) => tryNumber === null || tryNumber === undefined || a.try_number === tryNumber);
  const save = (a) =>
    download(path + "/" + enc(a.name) + query({ map_index: mapIndex >= 0 ? mapIndex : undefined, try: a.try_number }), a.name.split("/").pop()).catch((e) =>
      toast(`Could not download ${a.name}: ${e.message}`, "error"),
    );
  return (
    <div id="task-artifacts">
      <h3>Artifacts</h3>
      <ErrorBox error={list.error} />
      {list.data && !rows.length ? <p class="muted">No artifacts (a successful try's files in /out become artifacts).</p> : null}
      {rows.length ? (
        <table class="artifacts">
          <thead>
            <tr>
              <th>File</th>
              <th>Size</th>
              <th>Hash</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((a) => (
              <tr key={a.try_number + "/" + a.name} data-artifact={a.name}>
                <td class="mono">{a.name}</td>
                <td>{bytes(a.size)}</td>
                <td class="mono" data-tip={a.hash}>
                  {shortId(a.hash)}
                </td>
                <td>
                  <Button tip={`Download ${a.name} (try ${a.try_number})`} onClick={() => save(a)}>
                    Download
                  </Button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}

function Metrics({ metrics }) {
  const entries = Object.entries(metrics || {});
  if (!entries.length) return <p class="muted">No metrics.</p>;
  return (
    <table class="data metrics" id="task-metrics">
      <thead>
        <tr>
          <th>Metric</th>
          <th class="num">Value</th>
        </tr>
      </thead>
      <tbody>
        {entries.map(([k, v]) => (
          <tr key={k}>
            <td>
              <code>{k}</code>
            </td>
            <td class="num">{typeof v === "object" ? JSON.stringify(v) : String(v)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The actions on an instance (or, with mapIndex null on a mapped task, every instance of it). */
function Actions({ run, instances, taskId, mapIndex, instance, mapped, onDone }) {
  const [clearOpen, setClearOpen] = useState(false);
  const [downstream, setDownstream] = useState(true);
  const [upstream, setUpstream] = useState(false);
  const [onlyFailed, setOnlyFailed] = useState(false);
  const [busy, setBusy] = useState(false);
  const whole = mapped && !(mapIndex >= 0);
  const label = whole ? `every instance of ${taskId}` : instanceLabel(taskId, mapIndex);
  const mi = mapIndex >= 0 ? mapIndex : null;
  const mine = instances.filter((ti) => ti.task_id === taskId && (whole || ti.map_index === (mi ?? -1)));
  const runningHere = mine.filter((ti) => ti.state === "running" && ti.try_number > 0);

  const doClear = async () => {
    setBusy(true);
    const graph = await versionTasks(run.dag_id, run.version);
    const targets = clearTargets(instances, graph, { taskIds: [taskId], mapIndex: mi, downstream, upstream, onlyFailed });
    const extra = (
      <>
        <p>
          Cleared: <code>{label}</code>
          {downstream && upstream ? " and every task upstream and downstream of it" : downstream ? " and every task downstream of it" : upstream ? " and every task upstream of it" : " alone"}
          {onlyFailed ? ", only the instances that failed or are upstream_failed" : ""}, in run <code>{run.run_id}</code>.
        </p>
        {onlyFailed && instance && !FAILED.has(instance.state) ? (
          <p>
            <code>{label}</code> itself is {instance.state}, not failed: it is left as it is.
          </p>
        ) : null}
      </>
    );
    const ok = await confirm({
      title: `Clear ${label}?`,
      body: <ClearSummary targets={targets} graphKnown={!!graph} extra={extra} />,
      action: targets.some((t) => t.state === "running" && t.try_number > 0) ? "Kill and clear" : "Clear",
      danger: true,
    });
    if (ok) {
      const done = await runAction(`/api/v1/runs/${enc(run.run_id)}/clear`, {
        task_ids: [taskId],
        map_index: mi,
        downstream,
        upstream,
        only_failed: onlyFailed,
      });
      if (done) {
        setClearOpen(false);
        onDone?.("clear");
      }
    }
    setBusy(false);
  };

  const doMark = async (state) => {
    const kills = runningHere.map((ti) => (
      <p class="confirm-kill" key={ti.map_index}>
        <strong>
          ⚠ The running try {ti.try_number} of <code>{instanceLabel(ti.task_id, ti.map_index)}</code> will be killed.
        </strong>
      </p>
    ));
    const body =
      state === "success" ? (
        <div>
          <p>
            <code>{label}</code> in run <code>{run.run_id}</code> becomes <strong>success</strong> by hand, without running
            {whole ? " (its instances that have not finished yet)" : ""}. Its output stays what it was (none if it never succeeded).
          </p>
          <p>Tasks downstream of it that were waiting for it may then start; a finished run runs again until it settles.</p>
          {kills}
        </div>
      ) : (
        <div>
          <p>
            <code>{label}</code> in run <code>{run.run_id}</code> becomes <strong>failed</strong> by hand{whole ? " (its instances that have not finished yet)" : ""}, without a retry.
          </p>
          <p>
            Tasks downstream of it that need it to succeed become <strong>upstream_failed</strong> and will not run; the run may then fail.
          </p>
          {kills}
        </div>
      );
    const ok = await confirm({ title: `Mark ${label} ${state}?`, body, action: `Mark ${state}`, danger: true });
    if (!ok) return;
    setBusy(true);
    const done = await runAction(`/api/v1/runs/${enc(run.run_id)}/mark`, { state, task_id: taskId, map_index: mi });
    setBusy(false);
    if (done) onDone?.("mark");
  };

  return (
    <section class="task-actions" aria-label="Actions">
      <div class="row actions-row">
        <Button
          id="action-clear"
          tip={`Clear ${label}: kill it if it runs and run it again (choose what else to clear next)`}
          aria-expanded={clearOpen}
          onClick={() => setClearOpen((o) => !o)}
          disabled={busy}
        >
          ↻ Clear…
        </Button>
        <Button id="action-mark-success" tip={`Mark ${label} success by hand (asks first)`} onClick={() => doMark("success")} disabled={busy}>
          ✓ Mark success
        </Button>
        <Button id="action-mark-failed" tip={`Mark ${label} failed by hand: downstream tasks become upstream_failed (asks first)`} onClick={() => doMark("failed")} disabled={busy}>
          ✕ Mark failed
        </Button>
      </div>
      {clearOpen ? (
        <form
          class="clear-form"
          id="clear-form"
          onSubmit={(e) => {
            e.preventDefault();
            doClear();
          }}
        >
          <label class="check" data-tip="Also clear every task that depends on this one, directly or not">
            <input type="checkbox" id="clear-downstream" checked={downstream} onChange={(e) => setDownstream(e.currentTarget.checked)} /> Downstream
          </label>
          <label class="check" data-tip="Also clear every task this one depends on, directly or not">
            <input type="checkbox" id="clear-upstream" checked={upstream} onChange={(e) => setUpstream(e.currentTarget.checked)} /> Upstream
          </label>
          <label class="check" data-tip="Clear only the instances that failed or are upstream_failed">
            <input type="checkbox" id="clear-only-failed" checked={onlyFailed} onChange={(e) => setOnlyFailed(e.currentTarget.checked)} /> Only failed
          </label>
          <Button type="submit" primary id="clear-submit" tip="Say what will run again, and ask before doing it" disabled={busy}>
            Clear…
          </Button>
          <Button id="clear-cancel" tip="Close this form without clearing" onClick={() => setClearOpen(false)}>
            Cancel
          </Button>
        </form>
      ) : null}
    </section>
  );
}

const PAGE = 100;

/** A mapped task's instances, 100 a page, to pick one. */
function InstanceList({ children, onPick }) {
  const [page, setPage] = useState(0);
  const [state, setState] = useState("");
  const counts = useMemo(() => {
    const c = {};
    for (const ti of children) c[ti.state] = (c[ti.state] || 0) + 1;
    return c;
  }, [children]);
  const shown = state ? children.filter((ti) => ti.state === state) : children;
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  const p = Math.min(page, pages - 1);
  const slice = shown.slice(p * PAGE, p * PAGE + PAGE);
  return (
    <section class="instances" aria-label="Mapped instances">
      <div class="row">
        <h3>{children.length} mapped instances</h3>
        <span class="state-counts">
          {Object.entries(counts).map(([s, n]) => (
            <span key={s} class="state-count">
              <StateBadge state={s} /> {n}
            </span>
          ))}
        </span>
      </div>
      <div class="row">
        <label class="inline">
          State{" "}
          <select
            id="instances-state"
            value={state}
            onChange={(e) => {
              setState(e.currentTarget.value);
              setPage(0);
            }}
            data-tip="Show only the instances in this state"
          >
            <option value="">any</option>
            {Object.keys(counts).map((s) => (
              <option key={s} value={s}>
                {s} ({counts[s]})
              </option>
            ))}
          </select>
        </label>
        <span class="spacer" />
        <Button id="instances-prev" tip="The previous 100 instances" disabled={p === 0} onClick={() => setPage(p - 1)}>
          ‹ Previous
        </Button>
        <span class="muted">
          page {p + 1} of {pages}
        </span>
        <Button id="instances-next" tip="The next 100 instances" disabled={p >= pages - 1} onClick={() => setPage(p + 1)}>
          Next ›
        </Button>
      </div>
      <table class="data instance-table" id="task-instances">
        <thead>
          <tr>
            <th class="num">Index</th>
            <th>State</th>
            <th class="num">Try</th>
            <th>Item</th>
            <th>Duration</th>
          </tr>
        </thead>
        <tbody>
          {slice.map((ti) => (
            <tr
              key={ti.map_index}
              class="instance-row clickable"
              data-map-index={ti.map_index}
              data-state={ti.state}
              tabIndex={0}
              onClick={() => onPick(ti.map_index)}
              onKeyDown={(e) => e.key === "Enter" && onPick(ti.map_index)}
              data-tip={`Open instance [${ti.map_index}]`}
            >
              <td class="num">{ti.map_index}</td>
              <td>
                <StateBadge state={ti.state} />
              </td>
              <td class="num">{ti.try_number}</td>
              <td class="mono item-cell">{ti.map_item === undefined || ti.map_item === null ? "–" : JSON.stringify(ti.map_item)}</td>
              <td>{duration(secondsBetween(ti.started_at, ti.ended_at))}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function TaskPanel({ runId, taskId, mapIndex, onClose }) {
  const me = useSession();
  const canAct = atLeast("author", me);
  const given = mapIndex === null || mapIndex === undefined || mapIndex === "" ? null : Number(mapIndex);
  const [picked, setPicked] = useState(given !== null && given >= 0 ? given : null);
  const [selected, setSelected] = useState(null); // a try number, or null: the latest
  const seenTries = useRef(null);
  const [fresh, setFresh] = useState(new Set());

  useEffect(() => {
    setPicked(given !== null && given >= 0 ? given : null);
    setSelected(null);
  }, [runId, taskId, given]);

  const run = useAsync(() => get(`/api/v1/runs/${enc(runId)}`), [runId]);
  const instances = run.data?.tasks || [];
  const children = useMemo(
    () => instances.filter((ti) => ti.task_id === taskId && ti.map_index >= 0).sort((a, b) => a.map_index - b.map_index),
    [instances, taskId],
  );
  const mapped = children.length > 0;
  const index = picked !== null ? picked : mapped ? null : -1;
  const instance = index === null ? instances.find((ti) => ti.task_id === taskId && ti.map_index === -1) : instances.find((ti) => ti.task_id === taskId && ti.map_index === index);

  const tries = useAsync(
    () => (index === null || !run.data ? Promise.resolve(null) : get(`/api/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/tries` + query({ map_index: index >= 0 ? index : undefined }))),
    [runId, taskId, index, !!run.data],
  );
  const tryList = tries.data?.items || [];

  // Tries that arrive while the panel is open (after a clear, a retry) are marked new.
  useEffect(() => {
    seenTries.current = null;
    setFresh(new Set());
  }, [runId, taskId, index]);
  useEffect(() => {
    if (!tries.data) return;
    const numbers = tryList.map((t) => t.try_number);
    if (seenTries.current === null) seenTries.current = new Set(numbers);
    else {
      const added = numbers.filter((n) => !seenTries.current.has(n));
      if (added.length) {
        added.forEach((n) => seenTries.current.add(n));
        setFresh((f) => new Set([...f, ...added]));
      }
    }
  }, [tries.data]);

  const reloadAll = () => {
    run.reload();
    tries.reload();
  };
  const throttled = useThrottled(reloadAll, 300);
  useLive((name, d) => (name === "task" && d.run_id === runId && d.task_id === taskId) || (name === "run" && d.run_id === runId), throttled);
  // A running try's progress (ABI v2) changes without an event: read the tries every 2 s while one runs.
  const runningTry = tryList.some((t) => !t.outcome && !t.ended_at);
  useEffect(() => {
    if (!runningTry) return;
    const timer = setInterval(() => tries.reload(), 2000);
    return () => clearInterval(timer);
  }, [runningTry, runId, taskId, index]);

  // Escape closes the panel (unless a dialog is open on top of it).
  useEffect(() => {
    const onKey = (e) => {
      if (e.key === "Escape" && !document.querySelector(".modal-backdrop")) onClose?.();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [onClose]);

  const latest = tryList.length ? tryList[tryList.length - 1] : null;
  const shownTry = selected !== null ? tryList.find((t) => t.try_number === selected) || latest : latest;
  const waiting = instance && ["scheduled", "queued", "up_for_retry", "up_for_reschedule"].includes(instance.state) && (!latest || latest.outcome || latest.ended_at);
  const ready = !!run.data && (index === null || !!tries.data || !!tries.error);
  const title = index === null ? taskId : instanceLabel(taskId, index);

  return (
    <aside class="side-panel task-panel" id="task-panel" data-ready={ready ? "true" : "false"} data-task={taskId} data-map-index={index ?? ""} aria-label={`Task ${title}`}>
      <header>
        <h2 class="panel-title">
          {mapped && index !== null ? (
            <Button class="btn-icon" id="task-back" tip={`Back to every instance of ${taskId}`} onClick={() => setPicked(null)}>
              ‹
            </Button>
          ) : null}
          <span class="mono">{title}</span>
        </h2>
        <span id="task-state" data-state={(instance?.state) || "none"}>
          <StateBadge state={instance?.state || "none"} />
        </span>
        <span class="spacer" />
        <Button class="btn-icon" id="task-close" tip="Close the panel (Esc)" onClick={onClose}>
          ✕
        </Button>
      </header>
      <div class="body">
        <ErrorBox error={run.error} />
        {!run.data && run.loading ? <Loading what="Loading the task instance" /> : null}
        {run.data ? (
          <>
            <p class="muted panel-sub">
              Run{" "}
              <Link href={`/runs/${enc(runId)}`} class="mono">
                {runId}
              </Link>{" "}
              of{" "}
              <Link href={`/dags/${enc(run.data.dag_id)}`} class="mono">
                {run.data.dag_id}
              </Link>{" "}
              <StateBadge state={run.data.state} />
            </p>
            {!instance && index !== null ? (
              <div class="error-box" role="alert">
                Run {runId} has no instance {title}.
              </div>
            ) : null}
            {canAct && (instance || mapped) ? (
              <Actions
                run={run.data}
                instances={instances}
                taskId={taskId}
                mapIndex={index}
                instance={instance}
                mapped={mapped}
                onDone={() => {
                  setSelected(null);
                  reloadAll();
                }}
              />
            ) : null}
            {index === null ? (
              <InstanceList children={children} onPick={(i) => setPicked(i)} />
            ) : instance ? (
              <>
                <dl class="figures instance-figures">
                  <Figure label="Try" tip="The latest try's number (0: never tried)">
                    {instance.try_number}
                  </Figure>
                  <Figure label="Started" tip="When the latest try started">
                    {time(instance.started_at)}
                  </Figure>
                  <Figure label="Ended" tip="When the instance finished">
                    {time(instance.ended_at)}
                  </Figure>
                  <Figure label="Duration" tip="From its start to its end (to now while it runs)">
                    {instance.started_at ? duration(secondsBetween(instance.started_at, instance.ended_at)) : "–"}
                  </Figure>
                  {instance.next_try_at ? (
                    <Figure label="Next try" tip="When the next try is due">
                      {time(instance.next_try_at)}
                    </Figure>
                  ) : null}
                  {instance.reason ? (
                    <Figure label="Reason" tip="Why it is not a success: the last failure's message, or why it was skipped">
                      <span class="try-message">{instance.reason}</span>
                    </Figure>
                  ) : null}
                </dl>
                {index >= 0 && instance.map_item !== undefined ? (
                  <>
                    <h3>Mapped item</h3>
                    <Json value={instance.map_item} />
                  </>
                ) : null}

                <h3>Tries</h3>
                <ErrorBox error={tries.error} />
                {!tries.data && tries.loading ? <Loading what="Loading the tries" /> : null}
                {tries.data && !tryList.length && !waiting ? <p class="muted">No try yet.</p> : null}
                <ol class="tries" id="task-tries">
                  {tryList.map((t) => {
                    const isSel = shownTry && t.try_number === shownTry.try_number;
                    const pick = () => setSelected(t.try_number);
                    return (
                      <li
                        key={t.try_number}
                        class={`try${isSel ? " selected" : ""}${fresh.has(t.try_number) ? " try-new" : ""}${t.outcome === "killed" || t.outcome === "interrupted" ? " try-killed" : ""}`}
                        data-try={t.try_number}
                        data-outcome={t.outcome || "running"}
                        tabIndex={0}
                        role="button"
                        aria-pressed={!!isSel}
                        aria-label={`Try ${t.try_number}: ${t.outcome || "running"}. Show its figures and log`}
                        onClick={pick}
                        onKeyDown={(e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), pick())}
                      >
                        <span class="try-num">#{t.try_number}</span>
                        <OutcomeBadge outcome={t.outcome} />
                        {fresh.has(t.try_number) ? <span class="new-label">new</span> : null}
                        <span class="try-fig">
                          <span class="muted">started</span> {time(t.started_at)}
                        </span>
                        <span class="try-fig">
                          <span class="muted">ended</span> {t.outcome || t.ended_at ? time(t.ended_at) : "–"}
                        </span>
                        <span class="try-fig">
                          <span class="muted">took</span> {duration(secondsBetween(t.started_at, t.ended_at))}
                        </span>
                        <span class="try-fig">
                          <span class="muted">wall</span> {t.wall_us !== null && t.wall_us !== undefined ? duration(t.wall_us / 1e6) : "–"}
                        </span>
                        <span class="try-fig">
                          <span class="muted">fuel</span> {fuel(t.fuel_used)}
                        </span>
                        <span class="try-fig">
                          <span class="muted">peak</span> {bytes(t.peak_memory)}
                        </span>
                        <span class="try-fig mono">
                          <span class="muted">plugin</span> {shortId(t.plugin_id)}
                        </span>
                      </li>
                    );
                  })}
                  {waiting ? (
                    <li class="try-pending" data-tip="The next try has not started yet: the instance waits for a worker or its retry time">
                      <span class="try-num">#{(instance.try_number || 0) + 1}</span>
                      <StateBadge state={instance.state} /> <span class="muted">waiting to start…</span>
                    </li>
                  ) : null}
                </ol>
                {shownTry ? (
                  <div class="try-detail" data-try={shownTry.try_number}>
                    <h3>
                      Try {shownTry.try_number}
                      {shownTry === latest ? <span class="muted"> (latest)</span> : null}
                    </h3>
                    {shownTry.outcome === "killed" ? <p class="killed-note">This try was killed: a clear or a mark stopped it while it ran.</p> : null}
                    {shownTry.outcome === "interrupted" ? <p class="killed-note">This try was interrupted: its worker stopped or vanished before it ended.</p> : null}
                    <TryDetails t={shownTry} />
                    <TryLog runId={runId} taskId={taskId} mapIndex={index} tryRow={shownTry} onEnded={reloadAll} />
                  </div>
                ) : null}

                <h3>Output</h3>
                {instance.output === null || instance.output === undefined ? <p class="muted">No output (only a successful try has one).</p> : <Json value={instance.output} />}
                <h3>Metrics</h3>
                <Metrics metrics={instance.metrics} />
                {index !== null ? (
                  <Artifacts runId={runId} taskId={taskId} mapIndex={index} tryNumber={shownTry ? shownTry.try_number : null} reloadKey={latest ? latest.try_number + (latest.outcome || "") : ""} />
                ) : null}
              </>
            ) : null}
          </>
        ) : null}
      </div>
    </aside>
  );
}
