// Unit tests of js-clean's logic and its golden files, under Node without wasm:
//   node --import ../../plugin-sdk/js/sdk/local.mjs --test test.mjs
// (--import first maps the SDK's host import, `sandflow:operator/host`, to a local stand-in.)
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { clean, median, run } from "./clean.js";
import { runLocal } from "../../plugin-sdk/js/sdk/local.mjs";

const here = new URL(".", import.meta.url);

test("median of odd and even counts", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
});

test("clean drops values past max_mad and keeps input order", () => {
  const out = clean([10, 11, 9, 10, 50, 10, -30, 11], 3.5);
  assert.deepEqual(out.values, [10, 11, 9, 10, 10, 11]);
  assert.deepEqual(out.removed, [50, -30]);
  assert.equal(out.median, 10);
  assert.equal(out.mad, 1);
});

test("a value exactly at max_mad is kept", () => {
  // median 0, MAD 1: 5 scores 0.6745 * 5 / 1, and only a score above max_mad removes a value.
  assert.deepEqual(clean([-1, 0, 0, 1, 5], (0.6745 * 5) / 1).removed, []);
  assert.deepEqual(clean([-1, 0, 0, 1, 5], (0.6745 * 5) / 1 - 1e-9).removed, [5]);
});

test("MAD 0 keeps everything; empty input gives nulls", () => {
  assert.deepEqual(clean([2, 2, 2, 40]).removed, []);
  assert.deepEqual(clean([]), { values: [], removed: [], median: null, mad: null });
});

test("bad params and inputs are task errors with clear messages", async () => {
  const h = run.handler;
  await assert.rejects(runLocal(h, { abi: 1, params: { max_mad: -1 }, inputs: { parse: { values: [] } } }, { quiet: true }),
    /params\.max_mad must be a positive number/);
  await assert.rejects(runLocal(h, { abi: 1, inputs: { parse: { values: [1, "x"] } } }, { quiet: true }),
    /inputs\.parse\.values\[1\] is "x", not a number/);
  await assert.rejects(runLocal(h, { abi: 1, inputs: { other: {} } }, { quiet: true }),
    /no values: expected inputs\.parse\.values .* inputs has `other`/);
  await assert.rejects(runLocal(h, { abi: 1, inputs: { parse: { rows: 1 } } }, { quiet: true }),
    /inputs\.parse has no `values` list/);
});

for (const file of readdirSync(new URL("tests/", here)).filter((f) => f.endsWith(".context.json")).sort()) {
  const name = file.replace(/\.context\.json$/, "");
  test(`golden ${name}`, async () => {
    const context = JSON.parse(readFileSync(new URL(`tests/${file}`, here), "utf8"));
    const expected = JSON.parse(readFileSync(new URL(`tests/${name}.expected.json`, here), "utf8"));
    assert.deepEqual(await runLocal(run.handler, context, { quiet: true }), expected);
  });
}
