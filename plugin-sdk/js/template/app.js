// {{name}}: a Sandflow operator (ABI v2 component, JavaScript on QuickJS) that joins `params.words`
// into a sentence and counts them.
//
// Build: ./build.sh. Try it without wasm: node sdk/local.mjs run app.js tests/basic.context.json
import { operator, log, progress, TaskError } from "./sdk/sandflow.js";

/** The pure logic, importable by tests: "hello", "world" → "Hello world." */
export function sentence(words) {
  if (words.length === 0) return "";
  const text = words.join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1) + ".";
}

export const run = operator((ctx) => {
  const words = ctx.params.words ?? [];
  if (!Array.isArray(words) || !words.every((w) => typeof w === "string")) {
    throw new TaskError(`params.words must be a list of strings, got ${JSON.stringify(words)}`);
  }
  progress(0.5, `joining ${words.length} words`);
  const text = sentence(words);
  log.info(`{{name}}: task ${ctx.taskId || "?"} try ${ctx.tryNumber}: ${words.length} words`);
  return { output: { sentence: text, count: words.length }, metrics: { words: words.length } };
});
