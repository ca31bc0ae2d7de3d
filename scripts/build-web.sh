#!/usr/bin/env bash
# Builds the web UI into web/dist/ (index.html, app.js, app.css), which the sandflow binary embeds:
# installs the pinned npm packages of web/package-lock.json (npm ci, only when they changed) and
# bundles them with esbuild. `cargo build` needs none of this: a binary built without web/dist
# serves a page that says to run this script.
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! command -v npm > /dev/null; then
    echo "scripts/build-web.sh: npm is missing: run scripts/install-deps.sh" >&2
    exit 2
fi
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
echo "web UI built into web/dist/ ($(du -sh dist | cut -f1))"
