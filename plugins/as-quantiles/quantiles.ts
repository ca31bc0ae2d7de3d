// Sandflow example operator "quantiles" in AssemblyScript (ABI v1).
//
// Input: inputs[params.from].values (params.from defaults to "clean"), or params.values when that
// upstream input is absent. Output: {"p50", "p90", "p99", "iqr"} computed like numpy's default
// quantile method ("linear": interpolation between the closest ranks, numpy's own lerp); all null for
// no values. Metrics: {"count": n}.
import { run, fail, log, Context, Result, JValue } from "../../plugin-sdk/assemblyscript/sdk/sandflow";

/** numpy.quantile(sorted, q, method="linear") for sorted, non-empty data. */
function quantile(sorted: Array<f64>, q: f64): f64 {
  const n = sorted.length;
  const virtual = <f64>(n - 1) * q;
  const prevIndex = Math.floor(virtual);
  const gamma = virtual - prevIndex;
  let lo = <i32>prevIndex;
  if (lo < 0) lo = 0;
  if (lo > n - 1) lo = n - 1;
  const hi = lo + 1 > n - 1 ? n - 1 : lo + 1;
  const a = sorted[lo];
  const b = sorted[hi];
  // numpy's _lerp: a + (b-a)*t, or b - (b-a)*(1-t) when t >= 0.5 (keeps the result monotonic).
  const diff = b - a;
  return gamma >= 0.5 ? b - diff * (1.0 - gamma) : a + diff * gamma;
}

function values(ctx: Context): Array<f64> {
  const from = ctx.stringParam("from", "clean");
  const upstream = ctx.input(from);
  if (upstream !== null && !upstream.isNull()) {
    const v = upstream.get("values");
    if (v === null) { fail("inputs." + from + " has no `values`"); return []; }
    const xs = v.toNumbers();
    if (xs === null) { fail("inputs." + from + ".values must be an array of numbers"); return []; }
    return xs;
  }
  return ctx.numbers("values");
}

function handle(ctx: Context): Result {
  const xs = values(ctx);
  const sorted = xs.slice(0);
  sorted.sort((a: f64, b: f64): i32 => (a < b ? -1 : a > b ? 1 : 0));
  const out = JValue.newObject();
  if (sorted.length == 0) {
    out.set("p50", JValue.newNull()).set("p90", JValue.newNull())
      .set("p99", JValue.newNull()).set("iqr", JValue.newNull());
  } else {
    for (let i = 0; i < sorted.length; i++) {
      if (!isFinite(sorted[i])) fail("values must be finite numbers");
    }
    out.set("p50", JValue.newNumber(quantile(sorted, 0.5)))
      .set("p90", JValue.newNumber(quantile(sorted, 0.9)))
      .set("p99", JValue.newNumber(quantile(sorted, 0.99)))
      .set("iqr", JValue.newNumber(quantile(sorted, 0.75) - quantile(sorted, 0.25)));
  }
  log("quantiles: " + sorted.length.toString() + " values");
  return new Result().withOutput(out).metric("count", <f64>sorted.length);
}

run(handle);
