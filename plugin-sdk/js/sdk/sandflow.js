// Sandflow's JavaScript SDK for ABI v2 operators (the `sandflow:operator@2.0.0` component world),
// built with componentize-qjs (QuickJS).
//
// An operator is an ES module (say `app.js`) that exports the world's `run`, made by `operator()`
// from a function of the task context:
//
//     import { operator, log, progress, metric, TaskError } from "./sdk/sandflow.js";
//
//     export const run = operator((ctx) => {
//       const numbers = ctx.params.numbers ?? [];
//       log.info("summing", numbers.length, "numbers");
//       progress(0.5, "halfway");
//       return { output: { sum: numbers.reduce((a, b) => a + b, 0) }, metrics: { count: numbers.length } };
//     });
//
// Build: `componentize-qjs --wit sdk/wit -n operator --js app.js --sync -o NAME.wasm`.
//
// - `ctx.params`, `ctx.conf`, `ctx.inputs`, `ctx.mapItem` and `ctx.dagRuns` are plain JS values
//   (`JSON.parse` of the JSON text the host sends); the other fields are in camelCase, as
//   componentize-qjs maps the WIT record: `ctx.taskId`, `ctx.tryNumber`, `ctx.mapIndex`...
// - The function returns an object with any of `output` (any JSON value), `metrics` (name → finite
//   number), `branch` (array of task ids), `sensorDone` (boolean), `trigger` (array of
//   `{dagId, conf}`), or nothing (`undefined`/`null`) for an empty result.
// - Throwing fails the try with a task-error whose message is the error's message (throw
//   `new TaskError("...")` to say so on purpose: then no stack is logged).
// - `log.trace/debug/info/warn/error(...parts)` write one log line each (parts joined by spaces,
//   objects as JSON); `console.log/info/debug/warn/error` do the same (QuickJS has no console of its
//   own); `progress(fraction, message)` and `metric(name, value)` reach the host at once.
//
// The module also runs under Node (>= 20) for tests, without wasm: `node sdk/local.mjs run app.js
// CONTEXT.json` prints the ABI v1 task result that `sandflow plugin test` compares with the golden
// `*.expected.json` (local.mjs maps the host import below to a stand-in that logs to stderr).

import host from "sandflow:operator/host";

/** The log levels of the WIT enum `level`, in order. */
export const LEVELS = ["trace", "debug", "info", "warn", "error"];

/** Throw to fail the try with this message; unlike other errors, no stack is logged. */
export class TaskError extends Error {
  constructor(message) {
    super(message);
    this.name = "TaskError";
  }
}

function text(part) {
  if (typeof part === "string") return part;
  if (part instanceof Error) return part.message;
  if (part !== null && typeof part === "object") {
    try {
      return JSON.stringify(part);
    } catch {
      return String(part);
    }
  }
  return String(part);
}

/** Writes one line to the try's log at `level` ("trace", "debug", "info", "warn" or "error"). */
export function logAt(level, ...parts) {
  if (!LEVELS.includes(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}`);
  host.log(level, parts.map(text).join(" "));
}

/** The try's log, one line per call: `log.info("read", n, "rows")`. */
export const log = {
  trace: (...parts) => logAt("trace", ...parts),
  debug: (...parts) => logAt("debug", ...parts),
  info: (...parts) => logAt("info", ...parts),
  warn: (...parts) => logAt("warn", ...parts),
  error: (...parts) => logAt("error", ...parts),
};

// QuickJS inside the component has no `console`: give it one that writes to the try's log, so that
// `console.log` in the operator (or in code it borrows) is a log line, not a ReferenceError.
if (typeof globalThis.console === "undefined") {
  globalThis.console = {
    log: log.info,
    info: log.info,
    debug: log.debug,
    trace: log.trace,
    warn: log.warn,
    error: log.error,
  };
}

/** How far the try has come (0 to 1; the host clamps) and what it is doing: shown live in the UI. */
export function progress(fraction, message = "") {
  const f = Number(fraction);
  host.progress(Number.isFinite(f) ? f : 0, String(message));
}

function finite(name, value) {
  if (typeof value !== "number") {
    throw new TaskError(`metric \`${name}\` is ${value === null ? "null" : typeof value}, not a number`);
  }
  if (!Number.isFinite(value)) {
    throw new TaskError(`metric \`${name}\` is ${value}: JSON carries only finite numbers`);
  }
  return value;
}

/** One named figure, stored with the try now; a later call (or the result's metrics) replaces it. */
export function metric(name, value) {
  host.metric(String(name), finite(String(name), value));
}

// --- the context ------------------------------------------------------------------------------------

function parse(json, what, empty) {
  if (json === null || json === undefined || json.trim() === "") return empty;
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new TaskError(`the host sent ${what} that is not JSON: ${err.message}`);
  }
}

/**
 * The operator's context, from the WIT `task-context` record as componentize-qjs passes it (camelCase
 * keys; options are `null`; JSON fields are text).
 */
export function contextFromWit(c) {
  const ctx = {
    dagId: c.dagId,
    dagVersion: c.dagVersion,
    runId: c.runId,
    taskId: c.taskId,
    /** For a mapped task: the element's index; `null` otherwise. */
    mapIndex: c.mapIndex ?? null,
    /** For a mapped task: the element (any JSON value); `undefined` otherwise. */
    mapItem: c.mapItem == null ? undefined : parse(c.mapItem, "map-item", undefined),
    tryNumber: c.tryNumber,
    logicalDate: c.logicalDate ?? null,
    /** `{start, end}` (RFC 3339 text) for scheduled runs; `null` otherwise. */
    dataInterval: c.dataInterval ? { start: c.dataInterval.start, end: c.dataInterval.end } : null,
    conf: parse(c.conf, "conf", {}),
    params: parse(c.params, "params", {}),
    inputs: parse(c.inputs, "inputs", {}),
    /** Only for sensors that watch DAGs; `undefined` otherwise. */
    dagRuns: c.dagRuns == null ? undefined : parse(c.dagRuns, "dag-runs", undefined),
  };
  return ctx;
}

/** The operator's context from an ABI v1 task context object (for local runs under Node). */
export function contextFromV1(doc) {
  const d = doc ?? {};
  const interval = d.data_interval;
  return {
    dagId: d.dag_id ?? "",
    dagVersion: d.dag_version ?? "",
    runId: d.run_id ?? "",
    taskId: d.task_id ?? "",
    mapIndex: d.map_index ?? null,
    mapItem: d.map_item === undefined ? undefined : d.map_item,
    tryNumber: d.try_number ?? 1,
    logicalDate: d.logical_date ?? null,
    dataInterval: interval ? { start: interval.start, end: interval.end } : null,
    conf: d.conf ?? {},
    params: d.params ?? {},
    inputs: d.inputs ?? {},
    dagRuns: d.dag_runs,
  };
}

// --- the result -------------------------------------------------------------------------------------

const RESULT_KEYS = ["output", "metrics", "branch", "sensorDone", "sensor", "trigger"];

function json(value, what) {
  let out;
  try {
    out = JSON.stringify(value);
  } catch (err) {
    throw new TaskError(`${what} is not JSON: ${err.message}`);
  }
  if (out === undefined) throw new TaskError(`${what} is not JSON (a ${typeof value})`);
  return out;
}

/**
 * Checks what the operator returned and brings it to one shape:
 * `{output, metrics: [[name, value]...], branch, sensorDone, trigger: [{dagId, conf}]}`.
 */
export function normalizeResult(value) {
  if (value === undefined || value === null) value = {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new TaskError(
      `the operator returned ${Array.isArray(value) ? "an array" : "a " + typeof value}; return an object ` +
        `of result fields ({output, metrics, branch, sensorDone, trigger}) or nothing ` +
        `(wrap a plain output as {output: ...})`,
    );
  }
  const unknown = Object.keys(value).filter((k) => !RESULT_KEYS.includes(k));
  if (unknown.length) {
    throw new TaskError(
      `the returned object has unknown result field(s) ${unknown.map((k) => "`" + k + "`").join(", ")}; ` +
        `expected ${RESULT_KEYS.join(", ")} (wrap a plain output as {output: ...})`,
    );
  }
  const metrics = [];
  const m = value.metrics ?? {};
  if (typeof m !== "object" || Array.isArray(m)) throw new TaskError("`metrics` must be an object of name → number");
  for (const [name, v] of Object.entries(m)) metrics.push([name, finite(name, v)]);

  let branch = value.branch ?? null;
  if (branch !== null) {
    if (!Array.isArray(branch) || !branch.every((b) => typeof b === "string")) {
      throw new TaskError("`branch` must be an array of task ids (strings)");
    }
    branch = branch.slice();
  }

  let sensorDone = value.sensorDone ?? null;
  if (sensorDone === null && value.sensor != null) sensorDone = value.sensor.done ?? null;
  if (sensorDone !== null && typeof sensorDone !== "boolean") throw new TaskError("`sensorDone` must be a boolean");

  if (!Array.isArray(value.trigger ?? [])) throw new TaskError("`trigger` must be an array");
  const trigger = (value.trigger ?? []).map((t) => {
    const dagId = t && (t.dagId ?? t.dag_id);
    const extra = t && typeof t === "object" ? Object.keys(t).filter((k) => !["dagId", "dag_id", "conf"].includes(k)) : [];
    if (typeof dagId !== "string" || extra.length) {
      throw new TaskError(`trigger entry ${json(t, "a trigger entry")} is not {dagId: string, conf: object}`);
    }
    return { dagId, conf: t.conf ?? {} };
  });

  const output = value.output === undefined ? null : value.output;
  // Fail here, not in the host, if the output cannot be written as JSON.
  if (output !== null) json(output, "the output");
  return { output, metrics, branch, sensorDone, trigger };
}

/** The WIT `task-result` record, in the shape componentize-qjs lowers (options are `null`). */
export function resultToWit(r) {
  return {
    output: r.output === null ? null : json(r.output, "the output"),
    metrics: r.metrics,
    branch: r.branch,
    sensorDone: r.sensorDone,
    trigger: r.trigger.map((t) => ({ dagId: t.dagId, conf: json(t.conf, "a trigger's conf") })),
  };
}

/** The ABI v1 task result object the host records for this result (metrics sent earlier first). */
export function resultToV1(r, sentMetrics = {}) {
  const doc = {};
  if (r.output !== null) doc.output = JSON.parse(json(r.output, "the output"));
  const metrics = { ...sentMetrics };
  for (const [name, v] of r.metrics) metrics[name] = v;
  if (Object.keys(metrics).length) doc.metrics = metrics;
  if (r.branch !== null) doc.branch = r.branch;
  if (r.sensorDone !== null) doc.sensor = { done: r.sensorDone };
  if (r.trigger.length) doc.trigger = r.trigger.map((t) => ({ dag_id: t.dagId, conf: t.conf }));
  return doc;
}

function messageOf(err) {
  if (err instanceof Error) return err.message || err.name;
  if (err !== null && typeof err === "object" && typeof err.message === "string") return err.message;
  return String(err);
}

/**
 * Calls `handler(ctx)` and checks its result. Any thrown value becomes a TaskError with its message;
 * for errors other than TaskError the stack goes to the log first (at `debug`).
 */
export function call(handler, ctx) {
  try {
    return normalizeResult(handler(ctx));
  } catch (err) {
    if (err instanceof TaskError) throw err;
    if (err instanceof Error && err.stack) log.debug(`${err.name}: ${err.message}\n${err.stack}`.trimEnd());
    // A bug's message says what kind it is: "TypeError: cannot read property 'x' of null".
    const named = err instanceof Error && err.name && err.name !== "Error" ? `${err.name}: ` : "";
    throw new TaskError(named + (messageOf(err) || "the operator failed"));
  }
}

/**
 * The world's `run` export, from an operator function: `export const run = operator((ctx) => ...)`.
 *
 * componentize-qjs maps `result<task-result, task-error>` of a top-level export to "return the ok
 * value, throw the err value": this function returns the `task-result` record and throws a plain
 * `{message}` object as the `task-error` (a JS Error thrown out of the export would trap instead).
 * The operator function is kept as `run.handler` for tests.
 */
export function operator(handler) {
  if (typeof handler !== "function") throw new TypeError("operator() takes a function (ctx) => result");
  const run = function run(context) {
    try {
      return resultToWit(call(handler, contextFromWit(context)));
    } catch (err) {
      throw { message: messageOf(err) || "the operator failed" };
    }
  };
  run.handler = handler;
  return run;
}
