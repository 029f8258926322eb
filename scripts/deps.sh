#!/usr/bin/env bash
# Installs what the tests, the lab and the demo use, only when missing: Debian packages, then npm packages.
# Idempotent and quiet when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  iproute2 iputils-ping nftables iptables conntrack socat tcpdump tshark procps psmisc
  miniupnpd miniupnpd-nftables natpmpc miniupnpc coturn stun-client
  bind9 bind9-dnsutils knot knot-dnsutils python3-dnspython dnsperf openssl
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
  libstrongswan-standard-plugins strongswan-pki
  iperf3 wireguard-go wireguard-tools openssh-server openssh-client
  g++ systemd python3-prometheus-client chromium tesseract-ocr tesseract-ocr-eng
  postgresql-15
)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "deps: installing Debian packages: ${missing[*]}"
  # Daemons must not auto-start in the root namespace: the lab starts its own copies inside namespaces.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  fi
  $SUDO apt-get update -qq
  # --no-install-recommends: wireguard-tools would otherwise pull in a kernel image.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm: install from the lockfile when node_modules is missing or older than it.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # `npm install --no-save` rather than `npm ci`: npm 11 writes lockfiles without the other platforms' optional
  # biome binaries and then `npm ci` refuses them as out of sync. The lockfile still pins every version.
  echo "deps: npm install"
  npm install --no-save --no-audit --no-fund --loglevel=error
fi
