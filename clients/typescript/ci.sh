#!/bin/sh
# The spec through other people's tools, in CI: Redocly's recommended lint
# rules (redocly.yaml; the reasoned exceptions in .redocly.lint-ignore.yaml),
# openapi-typescript's types, and the openapi-fetch example type-checked
# with tsc and run against a live `tsnemap serve --demo` (submit, follow,
# fetch the result).
# Usage: sh clients/typescript/ci.sh   (from the repository root; needs go, node and npm)
set -eu
root=$(pwd)
cd "$root/clients/typescript"
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
npm ci --no-audit --no-fund --silent
echo "== redocly lint (recommended rules)"
npx redocly lint --config redocly.yaml --format=stylish ../../openapi/openapi.yaml
echo "== openapi-typescript, then tsc on the openapi-fetch example"
npx openapi-typescript ../../openapi/openapi.yaml --default-non-nullable false -o schema.d.ts 2>&1 | grep -v 'is never used' || true
test -s schema.d.ts
npx tsc -p .

work=$(mktemp -d)
pid=
trap '[ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$work"' EXIT
cd "$root"
. ./clients/serve-demo.sh
serve_demo "$work"
cd "$root/clients/typescript"
echo "== the example against serve --demo at $TSNEMAP_URL"
node dist/example.js || { cat "$work/log"; exit 1; }
