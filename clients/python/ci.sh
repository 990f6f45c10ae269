#!/bin/sh
# Runs the Python client's tests against a live `tsnemap serve --demo`.
# Usage: clients/python/ci.sh   (from the repository root; needs go and python3)
set -eu
root=$(pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/tsnemap" ./cmd/tsnemap
"$work/tsnemap" serve --demo --data-dir "$work/data" --addr 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
# serve prints the demo's curl command once it listens; take the URLs from it.
i=0
until grep -q "dataset_url" "$work/out" 2>/dev/null; do
  i=$((i + 1)); [ "$i" -lt 300 ] || { cat "$work/log"; exit 1; }; sleep 0.1
done
line=$(grep "dataset_url" "$work/out")
TSNEMAP_URL=$(echo "$line" | sed 's|.*curl -s \(http://[^/ ]*\)/v1/jobs.*|\1|')
TSNEMAP_DATASET_URL=$(echo "$line" | sed 's|.*"dataset_url":"\([^"]*\)".*|\1|')
TSNEMAP_IMAGE_URL_TEMPLATE=$(echo "$line" | sed 's|.*"image_url_template":"\([^"]*\)".*|\1|')
export TSNEMAP_URL TSNEMAP_DATASET_URL TSNEMAP_IMAGE_URL_TEMPLATE
cd "$root/clients/python"
python3 -m unittest -v test_client
