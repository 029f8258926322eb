#!/usr/bin/env bash
# Runs every benchmark in bench/ (compiled to dist/bench). Each prints its own figures and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in dist/bench/*.bench.js; do
  [ -e "$f" ] || continue
  echo "== $f"
  node "$f"
done
