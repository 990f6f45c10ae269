# serve_demo WORK [FLAG ...]: builds tsnemap into WORK, starts
# `tsnemap serve --demo` on a free loopback port with the flags given,
# waits until it listens, and sets pid (for the caller's trap) and
# TSNEMAP_URL (exported). Sourced by the clients' CI scripts, run from the
# repository root.
serve_demo() {
  work=$1
  shift
  go build -o "$work/tsnemap" ./cmd/tsnemap
  "$work/tsnemap" serve --demo --data-dir "$work/data" --addr 127.0.0.1:0 "$@" >"$work/out" 2>"$work/log" &
  pid=$!
  # serve prints the page's URL once it listens.
  i=0
  until grep -q "^Open the page: " "$work/out" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 600 ] || ! kill -0 "$pid" 2>/dev/null; then cat "$work/log"; exit 1; fi
    sleep 0.1
  done
  TSNEMAP_URL=$(sed -n 's|^Open the page: \(http://[^/ ]*\)/.*|\1|p' "$work/out")
  export TSNEMAP_URL
}
