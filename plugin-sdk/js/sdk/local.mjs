// Runs a Sandflow JavaScript operator under Node (>= 20), without wasm, for tests and debugging.
//
//   node sdk/local.mjs run APP.js [CONTEXT.json]   the ABI v1 task result on stdout (context on stdin
//                                                  without a file); log lines on stderr; exit code 1
//                                                  and `error: MESSAGE` when the operator fails
//   node sdk/local.mjs test TESTS_DIR APP.js       each TESTS_DIR/X.context.json against
//                                                  X.expected.json: prints `N passed, N failed`
//   node --import ./sdk/local.mjs --test ...       lets node's test runner import operator modules
//
// The component imports the host as `sandflow:operator/host`; here that specifier resolves to a
// stand-in that writes `LEVEL: message` lines (and `progress: 0.50 message`) to stderr and keeps the
// metrics sent with `metric()`, merged under the result's own as the host does. The result is printed
// as the host records it: keys sorted, metrics as 64-bit floats (`2.0`), like `sandflow plugin run`.

import { register } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import { resolve as resolvePath, join, basename } from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

const LEVELS = ["trace", "debug", "info", "warn", "error"];
const state = { metrics: {}, quiet: false };

globalThis.__sandflowLocalHost = {
  log(level, message) {
    if (!LEVELS.includes(level)) throw new TypeError(`host.log: unknown level ${level}`);
    if (state.quiet) return;
    for (const line of String(message).split("\n")) process.stderr.write(`${level}: ${line}\n`);
  },
  progress(fraction, message) {
    if (!state.quiet) process.stderr.write(`progress: ${Math.min(1, Math.max(0, fraction)).toFixed(2)} ${message}\n`);
  },
  metric(name, value) {
    state.metrics[name] = value;
  },
};

const HOST_MODULE = "data:text/javascript,export default globalThis.__sandflowLocalHost;";
const HOOKS = `
export async function resolve(specifier, context, next) {
  if (/^sandflow:operator\\/host(@[0-9.]+)?$/.test(specifier)) {
    return { url: ${JSON.stringify(HOST_MODULE)}, shortCircuit: true };
  }
  return next(specifier, context);
}`;
register("data:text/javascript," + encodeURIComponent(HOOKS));

/** Imports an operator module and returns its operator function (the `run` export's handler). */
export async function loadOperator(file) {
  const mod = await import(pathToFileURL(resolvePath(file)).href);
  const run = mod.run;
  if (typeof run !== "function" || typeof run.handler !== "function") {
    throw new Error(`${file} does not export \`run = operator((ctx) => ...)\` from sdk/sandflow.js`);
  }
  return run.handler;
}

/**
 * Runs `handler` on an ABI v1 context object; returns the v1 result object, or throws the TaskError
 * whose message the component's task-error would carry.
 */
export async function runLocal(handler, context, { quiet = false } = {}) {
  const { call, contextFromV1, resultToV1 } = await import(new URL("./sandflow.js", import.meta.url).href);
  state.metrics = {};
  state.quiet = quiet;
  try {
    const result = call(handler, contextFromV1(context));
    return resultToV1(result, state.metrics);
  } finally {
    state.quiet = false;
  }
}

/** JSON text with sorted keys; numbers under `metrics` written as floats (`2.0`), as the host does. */
export function stringifyResult(doc) {
  const write = (v, float) => {
    if (v === null || typeof v !== "object") {
      if (float && typeof v === "number" && Number.isInteger(v) && Math.abs(v) < 1e16) return `${v}.0`;
      return JSON.stringify(v);
    }
    if (Array.isArray(v)) return `[${v.map((x) => write(x, false)).join(",")}]`;
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${write(v[k], float)}`).join(",")}}`;
  };
  const keys = Object.keys(doc).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${write(doc[k], k === "metrics")}`).join(",")}}`;
}

function same(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
}

async function main(argv) {
  const [cmd, ...rest] = argv;
  if (cmd === "run" && (rest.length === 1 || rest.length === 2)) {
    const handler = await loadOperator(rest[0]);
    const text = readFileSync(rest.length === 2 ? rest[1] : 0, "utf8");
    try {
      const doc = await runLocal(handler, JSON.parse(text.trim() === "" ? "{}" : text));
      process.stdout.write(stringifyResult(doc) + "\n");
      return 0;
    } catch (err) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
  }
  if (cmd === "test" && rest.length === 2) {
    const handler = await loadOperator(rest[1]);
    const dir = rest[0];
    const cases = readdirSync(dir).filter((f) => f.endsWith(".context.json")).sort();
    let passed = 0;
    let failed = 0;
    for (const file of cases) {
      const name = basename(file, ".context.json");
      const context = JSON.parse(readFileSync(join(dir, file), "utf8"));
      const expected = JSON.parse(readFileSync(join(dir, `${name}.expected.json`), "utf8"));
      let got;
      let error = null;
      try {
        got = await runLocal(handler, context, { quiet: true });
      } catch (err) {
        error = err.message;
      }
      if (error === null && same(got, expected)) {
        passed++;
        process.stdout.write(`ok   ${name}\n`);
      } else {
        failed++;
        const what = error === null ? stringifyResult(got) : `the error: ${error}`;
        process.stdout.write(`FAIL ${name}\n  expected ${stringifyResult(expected)}\n  got      ${what}\n`);
      }
    }
    process.stdout.write(`${passed} passed, ${failed} failed\n`);
    return failed === 0 && passed > 0 ? 0 : 1;
  }
  process.stderr.write(
    "usage: node sdk/local.mjs run APP.js [CONTEXT.json]\n       node sdk/local.mjs test TESTS_DIR APP.js\n",
  );
  return 2;
}

if (process.argv[1] && resolvePath(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
