// Bundles src/ into dist/: app.js (every module and library, minified), app.css (our styles and
// uPlot's), index.html. esbuild, because it is one pinned npm package with no plugins to configure
// and builds this in well under a second. Run through scripts/build-web.sh.
import * as esbuild from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const dist = new URL("./dist/", import.meta.url);
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/main.jsx" },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".js": "jsx" },
  outdir: "dist",
  legalComments: "eof",
  logLevel: "warning",
});
await copyFile(new URL("./src/index.html", import.meta.url), new URL("./index.html", dist));
