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
(cd "$root" && go build -o "$work/tsnemap" ./cmd/tsnemap)
"$work/tsnemap" serve --demo --data-dir "$work/data" --addr 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
i=0
until grep -q "^Open the page: " "$work/out" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -ge 600 ] || ! kill -0 "$pid" 2>/dev/null; then cat "$work/log"; exit 1; fi
  sleep 0.1
done
TSNEMAP_URL=$(sed -n 's|^Open the page: \(http://[^/ ]*\)/.*|\1|p' "$work/out")
export TSNEMAP_URL
echo "== the example against serve --demo at $TSNEMAP_URL"
node dist/example.js || { cat "$work/log"; exit 1; }
