#!/usr/bin/env bash
# Makes Jazzer.js's prebuilt libFuzzer addon load on this machine. Idempotent; run by `make fuzz`.
#
# Why: @jazzer.js/core 4.0.0 (the only version whose addon ships inside the npm package; older ones
# download it from GitHub at install time) was built on a newer distribution. Its
# fuzzer-linux-x64.node needs GLIBC_2.38 (__isoc23_strtol, __isoc23_strtoul) and GLIBCXX_3.4.32
# (std::ios_base_library_init), while Debian 12 has glibc 2.36 and GCC 12. We build a small library
# defining those three symbols (scripts/fuzz-compat/compat.cpp), drop the symbols' version
# requirements from the addon, link the library into it, and mark the two missing version-needed
# entries weak so the loader accepts the file. A backup of the original addon is kept beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=node_modules/@jazzer.js/fuzzer/prebuilds
addon=$dir/fuzzer-linux-x64.node
if [ ! -f "$addon" ]; then
  echo "fuzz-setup: $addon missing; run npm install (Jazzer.js is a devDependency)" >&2
  exit 1
fi
if node -e "require('./$addon')" 2>/dev/null; then exit 0; fi
if ! command -v patchelf >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends patchelf >/dev/null
fi
for tool in g++ patchelf python3; do
  command -v "$tool" >/dev/null || { echo "fuzz-setup: needs $tool (apt-get install g++ patchelf python3)" >&2; exit 1; }
done
[ -f "$addon.orig" ] || cp "$addon" "$addon.orig"
cp "$addon.orig" "$addon"
g++ -shared -fPIC -O2 -o "$dir/libjazzer-compat.so" scripts/fuzz-compat/compat.cpp
patchelf --clear-symbol-version __isoc23_strtol --clear-symbol-version __isoc23_strtoul \
  --clear-symbol-version _ZSt21ios_base_library_initv "$addon"
# Two calls: patchelf 0.14 garbles the runpath when both options are given at once.
patchelf --add-needed libjazzer-compat.so "$addon"
patchelf --set-rpath '$ORIGIN' "$addon"
python3 scripts/fuzz-compat/weaken-verneed.py "$addon" GLIBC_2.38 GLIBCXX_3.4.32
node -e "require('./$addon')"
echo "fuzz-setup: patched $addon"
