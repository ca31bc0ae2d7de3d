// {{name}}: a Sandflow operator in AssemblyScript (ABI v1).
//
// Sums params.values (default []) times params.scale (default 1).
// Output {"count": n, "sum": s}; metrics {"count": n}.
import { run, fail, log, Context, Result, JValue } from "./sdk/sandflow";

function handle(ctx: Context): Result {
  const values = ctx.numbers("values");
  const scale = ctx.numberParam("scale", 1.0);
  if (!isFinite(scale)) fail("param `scale` must be finite");
  let sum = 0.0;
  for (let i = 0; i < values.length; i++) sum += values[i] * scale;
  log("{{name}}: summed " + values.length.toString() + " values");
  const out = JValue.newObject()
    .set("count", JValue.newNumber(<f64>values.length))
    .set("sum", JValue.newNumber(sum));
  return new Result().withOutput(out).metric("count", <f64>values.length);
}

run(handle);
