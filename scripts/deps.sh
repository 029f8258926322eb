#!/usr/bin/env bash
# Installs what is missing, and only that: Debian packages, then npm packages. Idempotent, quiet when all is there.
#   scripts/deps.sh --runtime   what `autotunnel` needs to build and run (`make build`, `make install`): iproute2
#                               (the agent's network monitor and TUN set-up), openssl (the server's self-signed
#                               certificate), g++ (the optional native AEAD addon), and the npm packages
#   scripts/deps.sh --test      that plus the test peers and lab tools (`make test`, `make demo`, `make bench`):
#                               BIND, Knot, strongSwan, coturn, miniupnpd, OpenSSH, tshark, ...
#   scripts/deps.sh --systemd-check  --runtime plus debootstrap and systemd-nspawn (`make systemd-check`)
# Nothing outlives the run but the packages: daemons the test peers bring must not start in the machine's own
# namespace (the lab starts its own copies), so a policy-rc.d that forbids it is put in place for the duration of
# `apt-get install` only, and only when the machine has none; it is removed afterwards, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_DEBS=(iproute2 openssl g++)
TEST_DEBS=(
  iputils-ping nftables iptables conntrack socat tcpdump tshark procps psmisc
  miniupnpd miniupnpd-nftables natpmpc miniupnpc coturn stun-client
  bind9 bind9-dnsutils knot knot-dnsutils python3-dnspython dnsperf
  strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
  libstrongswan-standard-plugins strongswan-pki
  iperf3 wireguard-go wireguard-tools openssh-server openssh-client
  systemd python3-prometheus-client chromium tesseract-ocr tesseract-ocr-eng
  postgresql-15
  # MIT Kerberos: what single sign-on runs on a host (an optional runtime dependency: the agent turns SSO off
  # without it, docs/sso.md) and the KDC/kinit the SSO tests use. kadmin.local is in krb5-admin-server.
  krb5-kdc krb5-admin-server krb5-pkinit krb5-user
)

mode="${1:---test}"
case "$mode" in
  --runtime) DEBS=("${RUNTIME_DEBS[@]}") ;;
  --test) DEBS=("${RUNTIME_DEBS[@]}" "${TEST_DEBS[@]}") ;;
  --systemd-check) DEBS=("${RUNTIME_DEBS[@]}" debootstrap systemd-container) ;;
  *) echo "usage: $0 [--runtime|--test|--systemd-check]" >&2; exit 2 ;;
esac

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "deps: autotunnel needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none));" \
    "Debian 12's nodejs is 18: install Node 20 from nodesource.com or Debian 13" >&2
  exit 1
fi

# The path is overridable for test/install/deps.test.ts only.
POLICY="${AUTOTUNNEL_POLICY_RC_D:-/usr/sbin/policy-rc.d}"
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "deps: installing Debian packages: ${missing[*]}"
  made_policy=""
  if [ "$mode" = --test ] && [ ! -e "$POLICY" ]; then
    made_policy=1
    trap '$SUDO rm -f "$POLICY"' EXIT
    printf '#!/bin/sh\n# autotunnel scripts/deps.sh: no daemon starts during this apt-get install\nexit 101\n' \
      | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
  fi
  $SUDO apt-get update -qq
  # --no-install-recommends: wireguard-tools would otherwise pull in a kernel image.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$made_policy" ]; then
    $SUDO rm -f "$POLICY"
    trap - EXIT
  fi
fi

# npm: install from the lockfile when node_modules is missing or older than it.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # `npm install --no-save` rather than `npm ci`: npm 11 writes lockfiles without the other platforms' optional
  # biome binaries and then `npm ci` refuses them as out of sync. The lockfile still pins every version.
  echo "deps: npm install"
  npm install --no-save --no-audit --no-fund --loglevel=error
fi
