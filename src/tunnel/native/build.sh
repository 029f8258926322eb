#!/usr/bin/env bash
# Builds the optional native addons with g++ against the node headers (OpenSSL and libuv symbols resolve from the
# node binary at load time):
#   dist/native/aead.node    in-place AEAD with reusable OpenSSL contexts (aead.cc); without it: node:crypto
#   dist/native/fdpoll.node  fd readiness on the event loop (fdpoll.cc), for UDP GRO receives; without it: no GRO
#   dist/native/csum.node    the Internet checksum sum (csum.cc) for the TUN offloads; without it: a JS loop
#   dist/native/fanout.node  the notify fan-out's helpers (src/server/native/fanout.cc): one frame to many sockets,
#                            LLQ event HMACs; without it: node's socket.write per session and node:crypto
# Quiet and idempotent: rebuilds an addon only when its source is newer.
set -euo pipefail
cd "$(dirname "$0")/../../.."
inc=""
for d in "$(dirname "$(dirname "$(command -v node)")")/include/node" /usr/include/node /usr/local/include/node; do
  if [ -f "$d/node_api.h" ] && [ -f "$d/openssl/evp.h" ] && [ -f "$d/uv.h" ]; then inc="$d"; break; fi
done
for src in src/tunnel/native/{aead,fdpoll,csum}.cc src/server/native/fanout.cc; do
  name=$(basename "$src" .cc)
  out=dist/native/$name.node
  [ -f "$out" ] && [ "$out" -nt "$src" ] && continue
  if [ -z "$inc" ] || ! command -v g++ >/dev/null; then
    echo "native: no node headers or g++; $name.node not built (its JS fallback is used, slower)" >&2
    continue
  fi
  mkdir -p dist/native
  g++ -O2 -std=c++17 -shared -fPIC -fvisibility=hidden -DNODE_GYP_MODULE_NAME="$name" -I"$inc" "$src" -o "$out.tmp" \
    && mv "$out.tmp" "$out" \
    || { rm -f "$out.tmp"; echo "native: $name.node build failed; its JS fallback is used" >&2; }
done
