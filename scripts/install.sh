#!/usr/bin/env bash
# `make install [PREFIX=/usr/local] [DESTDIR=]`: the built program and its runtime npm packages (no dev tools, no
# tests, no lab) in PREFIX/lib/autotunnel, and PREFIX/bin/autotunnel, a symlink that works from any directory
# (node resolves the entry point's real path). `make uninstall` removes both. Run after `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${PREFIX:-/usr/local}"
lib="$(realpath -m "${DESTDIR:-}$PREFIX/lib/autotunnel")"
bindir="$(realpath -m "${DESTDIR:-}$PREFIX/bin")"

if [ "${1:-}" = --uninstall ]; then
  if [ -L "$bindir/autotunnel" ]; then rm -f "$bindir/autotunnel"; fi
  rm -rf "$lib"
  echo "removed $lib and $bindir/autotunnel"
  exit 0
fi

[ -f dist/src/cli/main.js ] || { echo "install: not built; run \`make build\` first" >&2; exit 1; }
mkdir -p "$(dirname "$lib")" "$bindir"
stage="$lib.new.$$"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/dist"
cp bin/autotunnel "$stage/bin/autotunnel"
chmod 755 "$stage/bin/autotunnel"
cp package.json "$stage/"
# The compiled program without its tests.
(cd dist && find src -name '*.js' ! -name '*.test.js' -exec cp --parents {} "$stage/dist/" \;)
# The optional native addons (src/tunnel/native/build.sh: AEAD, GRO readiness, checksums, the Push fan-out), each
# with a slower fallback when absent; all of them, or an installed tunnel and server run slower than the build.
if compgen -G 'dist/native/*.node' >/dev/null; then mkdir -p "$stage/dist/native" && cp dist/native/*.node "$stage/dist/native/"; fi
# The runtime npm packages (package.json "dependencies" and theirs), as the lockfile installed them.
npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2 | sed "s#^$PWD/##" | sort -u | while read -r p; do
  mkdir -p "$stage/$(dirname "$p")"
  cp -a "$p" "$stage/$p"
done
chmod -R u=rwX,go=rX "$stage"
rm -rf "$lib"
mv "$stage" "$lib"
trap - EXIT
ln -sfn "../lib/autotunnel/bin/autotunnel" "$bindir/autotunnel"
echo "installed $lib ($(du -sh "$lib" | cut -f1)); $bindir/autotunnel -> ../lib/autotunnel/bin/autotunnel"
