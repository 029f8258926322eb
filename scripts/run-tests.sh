#!/usr/bin/env bash
# Runs every compiled test file with Node's built-in runner. Unit tests and the fuzz corpus replay first, then
# interop (real peers on loopback) and lab (network namespaces, needs root). One runner invocation, so one closing summary.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t unit < <(find dist/src dist/lab dist/test/soak dist/test/fuzz dist/test/install -name '*.test.js' 2>/dev/null | sort)
mapfile -t interop < <(find dist/test/interop -name '*.test.js' 2>/dev/null | sort)
mapfile -t security < <(find dist/test/security -name '*.test.js' 2>/dev/null | sort)
mapfile -t labt < <(find dist/test/lab -name '*.test.js' 2>/dev/null | sort)
files=("${unit[@]}" "${interop[@]}" "${security[@]}" "${labt[@]}")
if [ "${#files[@]}" -eq 0 ]; then echo "no test files found under dist/" >&2; exit 1; fi
exec node --test --test-reporter=spec --test-concurrency="${TEST_CONCURRENCY:-1}" "$@" "${files[@]}"
