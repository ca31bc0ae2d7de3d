// js-clean: the `clean` task of dags/polyglot.toml, an ABI v2 operator in JavaScript (QuickJS).
//
// Drops outliers by their robust z-score 0.6745·|x − median| / MAD (MAD = the median absolute
// deviation from the median): values whose score exceeds params.max_mad (default 3.5) are removed.
// When MAD is 0 (half the values or more are equal) every value is kept.
//
//   inputs:  {"parse": {"values": [12.5, ...], ...}}   (or params.values when there is no input;
//                                                       params.from names another upstream task)
//   params:  {"max_mad": 3.5}
//   output:  {"values": [kept, in input order], "removed": [dropped, in input order],
//             "median": m, "mad": d}                   (median and mad are null for no values)
//   metrics: {"removed": count}
//
// Build: ./build.sh OUT.wasm. Without wasm: node ../../plugin-sdk/js/sdk/local.mjs run clean.js tests/realistic.context.json
import { operator, log, progress, metric, TaskError } from "../../plugin-sdk/js/sdk/sandflow.js";

/** The median of a non-empty array of numbers (the mean of the middle two for an even count). */
export function median(xs) {
  const s = xs.slice().sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The pure logic: splits `values` into kept and removed by robust z-score against `maxMad`. */
export function clean(values, maxMad = 3.5) {
  if (values.length === 0) return { values: [], removed: [], median: null, mad: null };
  const m = median(values);
  const mad = median(values.map((x) => Math.abs(x - m)));
  if (mad === 0) return { values: values.slice(), removed: [], median: m, mad };
  const kept = [];
  const removed = [];
  for (const x of values) (0.6745 * Math.abs(x - m) / mad > maxMad ? removed : kept).push(x);
  return { values: kept, removed, median: m, mad };
}

function numbers(value, where) {
  if (!Array.isArray(value)) throw new TaskError(`${where} must be a list of numbers, got ${JSON.stringify(value)}`);
  value.forEach((x, i) => {
    if (typeof x !== "number" || !Number.isFinite(x)) {
      throw new TaskError(`${where}[${i}] is ${JSON.stringify(x)}, not a number`);
    }
  });
  return value;
}

export const run = operator((ctx) => {
  const { params, inputs } = ctx;
  const maxMad = params.max_mad ?? 3.5;
  if (typeof maxMad !== "number" || !(maxMad > 0) || !Number.isFinite(maxMad)) {
    throw new TaskError(`params.max_mad must be a positive number, got ${JSON.stringify(maxMad)}`);
  }
  const from = params.from ?? "parse";
  let values;
  if (inputs[from] !== undefined) {
    const upstream = inputs[from];
    if (upstream === null || typeof upstream !== "object" || !("values" in upstream)) {
      throw new TaskError(`inputs.${from} has no \`values\` list (is \`${from}\` the parse task?)`);
    }
    values = numbers(upstream.values, `inputs.${from}.values`);
  } else if (params.values !== undefined) {
    values = numbers(params.values, "params.values");
  } else {
    const have = Object.keys(inputs);
    throw new TaskError(
      `no values: expected inputs.${from}.values (upstream task \`${from}\`) or params.values; ` +
        `inputs has ${have.length ? have.map((k) => "`" + k + "`").join(", ") : "no tasks"}`,
    );
  }
  log.debug(`clean: ${values.length} values, max_mad ${maxMad}`);
  progress(0.1, `cleaning ${values.length} values`);

  const out = clean(values, maxMad);
  progress(0.9, "split done");
  if (values.length === 0) log.warn("clean: no values to clean");
  else if (out.mad === 0) log.warn(`clean: MAD is 0 (median ${out.median}): keeping all ${values.length} values`);
  else log.info(`clean: median ${out.median}, MAD ${out.mad}: kept ${out.values.length}, removed ${out.removed.length}`);
  if (out.removed.length > 0) log.debug(`clean: removed ${JSON.stringify(out.removed)}`);

  // Sent now (stored with the try even if a later step failed); the result's metrics repeat it.
  metric("removed", out.removed.length);
  progress(1, "done");
  return { output: out, metrics: { removed: out.removed.length } };
});
