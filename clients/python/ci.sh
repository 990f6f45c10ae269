#!/bin/sh
# The Python client in CI: pip-installs it (into a virtual environment),
# runs its tests against a live `tsnemap serve --demo` limited to 1 job a
# second (bursts of 2), then runs the Python quick start of README.md and
# docs/python.md exactly as written (the fenced block after the line
# `<!-- ci: python quick start -->`) against the same server.
# Usage: sh clients/python/ci.sh   (from the repository root; needs go and python3)
set -eu
root=$(pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
pid=
trap '[ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$work"' EXIT
. ./clients/serve-demo.sh
serve_demo "$work" --submit-rate 1 --submit-burst 2
echo "ci: serve --demo at $TSNEMAP_URL"

echo "== pip install ./clients/python (a virtual environment, $($python --version))"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check ./clients/python
echo "== the client's tests (the installed package, against the live server)"
(cd "$work" && "$work/venv/bin/python" "$root/clients/python/tests/test_client.py" -v 2>&1) ||
  { cat "$work/log"; exit 1; }

# The quick start runs in a directory that looks like a fresh clone's root
# for its paths (./clients), so that its virtual environment lands there.
quickstart() {
  block=$(awk '/<!-- ci: python quick start -->/{found=1; next} found && /^```/{if (inblock) exit; inblock=1; next} inblock{print}' "$1")
  if [ -z "$block" ]; then
    echo "ci: $1 has no Python quick start marked <!-- ci: python quick start -->"
    return 1
  fi
  echo "== the Python quick start of $1, as written"
  rm -rf "$work/qs" && mkdir "$work/qs" && ln -s "$root/clients" "$work/qs/clients"
  (cd "$work/qs" && printf '%s\n' "$block" | PATH="$(dirname "$(command -v "$python")"):$PATH" sh -e) ||
    { cat "$work/log"; return 1; }
}
quickstart docs/python.md
if grep -q "<!-- ci: python quick start -->" README.md; then
  quickstart README.md
else
  echo "ci: WARNING: README.md does not mark its Python quick start (<!-- ci: python quick start -->); not run"
fi
