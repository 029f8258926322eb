#!/usr/bin/env bash
# Builds dist/native/aead.node (in-place AEAD with reusable OpenSSL contexts, see aead.cc) with g++ against the
# node headers; OpenSSL symbols resolve from the node binary at load time. Optional: without it (no g++, no
# headers) the tunnel uses node:crypto. Quiet and idempotent: rebuilds only when aead.cc is newer.
set -euo pipefail
cd "$(dirname "$0")/../../.."
src=src/tunnel/native/aead.cc
out=dist/native/aead.node
[ -f "$out" ] && [ "$out" -nt "$src" ] && exit 0
inc=""
for d in "$(dirname "$(dirname "$(command -v node)")")/include/node" /usr/include/node /usr/local/include/node; do
  if [ -f "$d/node_api.h" ] && [ -f "$d/openssl/evp.h" ]; then inc="$d"; break; fi
done
if [ -z "$inc" ] || ! command -v g++ >/dev/null; then
  echo "native: no node headers or g++; the tunnel uses node:crypto (slower)" >&2
  exit 0
fi
mkdir -p dist/native
g++ -O2 -std=c++17 -shared -fPIC -fvisibility=hidden -DNODE_GYP_MODULE_NAME=aead -I"$inc" "$src" -o "$out.tmp" \
  && mv "$out.tmp" "$out" \
  || { rm -f "$out.tmp"; echo "native: aead.node build failed; the tunnel uses node:crypto" >&2; }
