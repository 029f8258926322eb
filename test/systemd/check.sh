#!/usr/bin/env bash
# `make systemd-check`: the units `autotunnel install-service` writes, run under a real systemd (issue 17). Not part
# of `make test`: it needs debootstrap and the Debian mirror the first time, and boots a container.
#
# A Debian 12 root file system (debootstrap, kept in $AUTOTUNNEL_SYSTEMD_ROOT, default
# /var/cache/autotunnel-systemd-root, reused across runs) is booted with `systemd-nspawn --boot` on a throwaway
# overlay, in a network namespace of its own (a veth pair inside it, documentation addresses: nothing leaves it),
# with /dev/net/tun bound in and CAP_NET_ADMIN kept (nspawn drops it unless it makes the network itself). Inside, autotunnel is installed as `make install` does (scripts/install.sh into the
# overlay, node 20 beside it), then, as a user would: install-service --server, account add, install-service --agent,
# systemctl start/stop; each step is checked from inside the container (dig, /proc, ip, autotunnel status, the
# journal). The machine's own /etc and systemd are never touched; the container, the overlay and the namespace go
# away at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE="${AUTOTUNNEL_SYSTEMD_ROOT:-/var/cache/autotunnel-systemd-root}"
BASE="$CACHE/base"
SUITE=bookworm
PKGS=systemd,systemd-sysv,dbus,iproute2,bind9-dnsutils,openssl,libstdc++6,procps,libcap2-bin,ca-certificates
ZONE=members.example
ADDR=198.51.100.10 # the container's address (RFC 5737), where the DNS service listens
ORIG_RESOLV=$'# the container\'s own resolv.conf (systemd-check)\nnameserver 192.0.2.53\nsearch example.net\n'

[ "$(id -u)" -eq 0 ] || { echo "systemd-check: needs root (debootstrap, systemd-nspawn, network namespaces)" >&2; exit 2; }
[ -f dist/src/cli/main.js ] || { echo "systemd-check: not built; run \`make build\` first" >&2; exit 2; }
for t in debootstrap systemd-nspawn nsenter; do
  command -v "$t" >/dev/null || { echo "systemd-check: $t missing: apt-get install debootstrap systemd-container" >&2; exit 2; }
done

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # check DESCRIPTION COMMAND...: passes when the command exits 0, else returns 1
  local what="$1"; shift
  if "$@"; then ok "$what"; else bad "$what"; return 1; fi
}

# 1. The root file system, once (a marker says it is complete: an interrupted debootstrap is redone).
if [ ! -f "$BASE/.autotunnel-complete" ]; then
  echo "systemd-check: debootstrap $SUITE into $BASE (once; a few minutes)"
  rm -rf "$BASE.tmp"
  mkdir -p "$CACHE"
  # The mirror apt is set up with (deb822 URIs: or a one-line deb), not a comment's.
  mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -E '^\s*(URIs:|deb\s)' | grep -v security | grep -oE 'https?://\S+/debian/?(\s|$)' | head -n1 | tr -d ' ' || true)"
  debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$BASE.tmp" "${mirror:-http://deb.debian.org/debian}" \
    >"$CACHE/debootstrap.log" 2>&1 || { echo "systemd-check: debootstrap failed, see $CACHE/debootstrap.log" >&2; exit 1; }
  rm -rf "$BASE"
  mv "$BASE.tmp" "$BASE"
  touch "$BASE/.autotunnel-complete"
fi

# The single sign-on layer, once: MIT Kerberos and OpenSSH (docs/sso.md) over the base, in an overlay of its own so
# the base stays as debootstrap made it. Their daemons must not start in the chroot: a policy-rc.d for the install.
SSO_LAYER="$CACHE/sso"
SSO_PKGS=(krb5-kdc krb5-admin-server krb5-pkinit krb5-user openssh-server)
if [ ! -f "$SSO_LAYER/.autotunnel-complete" ]; then
  echo "systemd-check: adding ${SSO_PKGS[*]} in $SSO_LAYER (once)"
  rm -rf "$SSO_LAYER.tmp" "$CACHE/sso-work" "$CACHE/sso-merged"
  mkdir -p "$SSO_LAYER.tmp" "$CACHE/sso-work" "$CACHE/sso-merged"
  m="$CACHE/sso-merged"
  mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$SSO_LAYER.tmp,workdir=$CACHE/sso-work" "$m"
  mount --bind /proc "$m/proc"
  printf '#!/bin/sh\nexit 101\n' >"$m/usr/sbin/policy-rc.d"
  chmod 755 "$m/usr/sbin/policy-rc.d"
  rc=0
  { chroot "$m" apt-get update -qq && DEBIAN_FRONTEND=noninteractive chroot "$m" apt-get install -y -qq \
    --no-install-recommends "${SSO_PKGS[@]}" && chroot "$m" apt-get clean &&
    # The packages' own KDC and kadmind have no realm here (they fail at boot): the agent runs its own krb5kdc.
    chroot "$m" systemctl mask krb5-kdc.service krb5-admin-server.service; } >"$CACHE/sso-apt.log" 2>&1 || rc=$?
  rm -f "$m/usr/sbin/policy-rc.d"
  umount "$m/proc"
  umount "$m"
  rm -rf "$CACHE/sso-work" "$m"
  [ "$rc" -eq 0 ] || { rm -rf "$SSO_LAYER.tmp"; echo "systemd-check: apt-get failed, see $CACHE/sso-apt.log" >&2; exit 1; }
  mv "$SSO_LAYER.tmp" "$SSO_LAYER"
  touch "$SSO_LAYER/.autotunnel-complete"
fi

# 2. This run: an overlay on the cached root, a network namespace, the container.
run="$(mktemp -d /var/tmp/autotunnel-systemd.XXXXXX)"
name="at-sd-$(basename "$run" | tr -dc 'a-zA-Z0-9' | tail -c 6)"
netns="$name"
nspawn_pid=""
mounted=""
cgdirs=()
# nspawn keeps a lock and a propagation directory under /run/systemd/nspawn, and on a /run that is not a tmpfs (as
# here) refuses to remove them: they go with the run, and the directories too when this run made them.
made_nspawn_run=""
[ -d /run/systemd/nspawn ] || made_nspawn_run=1
cleanup() {
  set +e
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" # nspawn asks the container's systemd to power off
    for _ in $(seq 1 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$nspawn_pid" 2>/dev/null && kill -KILL "$nspawn_pid"
    wait "$nspawn_pid" 2>/dev/null
  fi
  for d in "${cgdirs[@]}"; do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -rf "/run/systemd/nspawn/propagate/$name" "/run/systemd/nspawn/locks/"*"$name"* 2>/dev/null
  if [ -n "$made_nspawn_run" ]; then
    rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null
  fi
  [ -n "$mounted" ] && umount "$run/merged"
  ip netns del "$netns" 2>/dev/null
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$run/upper" "$run/work" "$run/merged"
mount -t overlay overlay -o "lowerdir=$SSO_LAYER:$BASE,upperdir=$run/upper,workdir=$run/work" "$run/merged"
mounted=1
root="$run/merged"
# autotunnel as `make install PREFIX=/usr/local` puts it, and node 20 beside it (Debian 12's nodejs is 18).
PREFIX=/usr/local DESTDIR="$root" scripts/install.sh >/dev/null
install -m 755 "$(command -v node)" "$root/usr/local/bin/node"
printf '%s' "$ORIG_RESOLV" >"$root/etc/resolv.conf"
echo "$name" >"$root/etc/hostname"

ip netns add "$netns"
ip -n "$netns" link set lo up
# A veth pair with both ends in the namespace (no dummy driver on every kernel): eth0 the container's uplink, gw0
# its far end, up but without an address, so packets to the gateway or beyond go nowhere.
ip -n "$netns" link add eth0 address 02:00:5e:10:00:0a type veth peer name gw0
ip -n "$netns" link set gw0 up
ip -n "$netns" addr add "$ADDR/24" dev eth0
ip -n "$netns" -6 addr add 2001:db8:10::10/64 dev eth0 nodad
ip -n "$netns" link set eth0 up
ip -n "$netns" route add default via 198.51.100.1 dev eth0

launch=(systemd-nspawn --boot --quiet --register=no -D "$root" -M "$name" --network-namespace-path="/run/netns/$netns"
  --bind=/dev/net/tun --capability=CAP_NET_ADMIN --resolv-conf=off --timezone=off --link-journal=no --console=pipe)
if [ -d /run/systemd/system ]; then
  # A machine run by systemd: nspawn puts the container in a transient scope of its own.
  "${launch[@]}" >"$run/console.log" 2>&1 </dev/null &
else
  # No systemd here (a container or a CI sandbox): no scope to ask for, so --keep-unit, and nspawn splits the cgroup
  # it runs in into payload/ and supervisor/. That cgroup is one of this run's, not the machine's root.
  for h in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd /sys/fs/cgroup; do
    if [ -f "$h/cgroup.procs" ] && [ "$(stat -fc %T "$h")" != tmpfs ] && mkdir "$h/$name" 2>/dev/null; then cgdirs+=("$h/$name"); fi
  done
  (
    for d in "${cgdirs[@]}"; do echo "$BASHPID" >"$d/cgroup.procs"; done
    exec "${launch[@]}" --keep-unit
  ) >"$run/console.log" 2>&1 </dev/null &
fi
nspawn_pid=$!

# The container's PID 1 (a child of nspawn) and a way to run commands in all its namespaces.
leader=""
for _ in $(seq 1 100); do
  for c in $(pgrep -P "$nspawn_pid" 2>/dev/null); do
    [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] && leader="$c"
  done
  [ -n "$leader" ] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$leader" ]; then
  echo "systemd-check: the container did not start:" >&2
  cat "$run/console.log" >&2
  exit 1
fi
in_ct() { nsenter -t "$leader" -m -u -i -n -p -C -- env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# Waits until CMD succeeds, for at most SECONDS (polled every 0.2 s).
wait_for() {
  local secs="$1"; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}
wait_for 30 in_ct test -S /run/systemd/private || true # the manager's socket: systemctl can talk to it
# After a failure the rest cannot be checked: the unit's status and journal, then out (cleanup runs).
give_up() {
  in_ct systemctl status --no-pager -l "$1" || true
  in_ct journalctl -b -u "$1" --no-pager -o cat | tail -n 40
  echo "$pass passed, $fail failed"
  exit 1
}
state="$(timeout 120 nsenter -t "$leader" -m -u -i -n -p -C -- systemctl is-system-running --wait 2>/dev/null || true)"
if [ "$state" = running ]; then ok "systemd boots in the container (is-system-running: running)"; else
  bad "systemd boots in the container (is-system-running: $state)"
  in_ct systemctl --failed --no-pager || true
fi
echo "     $(in_ct systemctl --version | head -n1)"

# From here on a failed check is counted and the run goes on (give_up where nothing after it can be checked).
set +e

# 3. The DNS service, as docs/server.md and `install-service --help` have it.
# Wildcard listeners (one socket per local address: getifaddrs), on port 5300: the agent's resolver needs port 53 of
# 127.0.0.153 in this same network namespace, which a wildcard :53 would hold.
in_ct autotunnel install-service --server --zone "$ZONE" --listen 0.0.0.0:5300 --tls-listen 0.0.0.0:853 >/dev/null
in_ct install -d -m 700 /etc/autotunnel
in_ct systemctl daemon-reload
check "autotunnel-server.service starts" in_ct systemctl start autotunnel-server.service
soa() { in_ct dig +time=1 +tries=1 -p 5300 @"$ADDR" "$ZONE" SOA +short | grep -q .; }
check "the server answers dig -p 5300 @$ADDR $ZONE SOA" wait_for 20 soa || give_up autotunnel-server.service
srv_pid="$(in_ct systemctl show -P MainPID autotunnel-server.service)"
srv_uid="$(in_ct awk '/^Uid:/{print $2}' "/proc/$srv_pid/status")"
check "the server runs as a dynamic user (uid $srv_uid)" test "$srv_uid" -ge 61184 -a "$srv_uid" -le 65519
check "the server holds only CAP_NET_BIND_SERVICE" \
  test "$(in_ct awk '/^CapEff:/{print $2}' "/proc/$srv_pid/status")" = 0000000000000400
# An account added beside the running server (docs/server.md), by root, in the dynamic user's state directory.
check "account add alice beside the running server (key file written 0600)" in_ct autotunnel account add alice \
  --data /var/lib/autotunnel-server --zone "$ZONE" -o /etc/autotunnel/alice.key.json
key="$(node -e 'const k=require(process.argv[1]);console.log(`${k.algorithm}:${k.keyName}:${k.secret}`)' \
  "$root/etc/autotunnel/alice.key.json")"
check "the server stays up after account add" in_ct systemctl is-active --quiet autotunnel-server.service
in_ct systemctl restart autotunnel-server.service
check "the server restarts on its state (SOA answered)" wait_for 20 soa

# 4. The agent: first with --system-resolver off (a dynamic user), then as installed by default (/etc/resolv.conf).
AGENT=(--server "$ADDR:5300" --hostname desktop --key-file /etc/autotunnel/alice.key.json
  --ca /var/lib/autotunnel-server/tls.crt --service _ssh._tcp:22)
aaaa() { in_ct dig +time=1 +tries=1 -p 5300 @"$ADDR" -y "$key" "desktop.alice.$ZONE" AAAA +short; }
published() { aaaa | grep -q '^fd'; }
unpublished() { [ -z "$(aaaa)" ]; }
tun_up() { in_ct ip -o link show dev autotun0 | grep -qE '[<,]UP[,>]'; }
status_json() { in_ct autotunnel status --json; }
agent_running() { status_json | node -e 'const s=JSON.parse(require("fs").readFileSync(0));process.exit(s.identity?.ula?0:1)'; }
resolver_set() {
  status_json | node -e 'const s=JSON.parse(require("fs").readFileSync(0));process.exit(s.datapath?.resolver?.system?.state==="set"?0:1)'
}

run_agent() { # run_agent LABEL EXPECT_ROOT(yes|no) EXTRA-OPTIONS...
  local label="$1" as_root="$2"; shift 2
  in_ct autotunnel install-service --agent "${AGENT[@]}" "$@" >/dev/null
  in_ct systemctl daemon-reload
  local cursor
  cursor="$(in_ct journalctl -n 0 --show-cursor -o cat | sed -n 's/^-- cursor: //p')"
  check "[$label] autotunnel-agent.service starts" in_ct systemctl start autotunnel-agent.service
  check "[$label] autotunnel status finds the agent (no --state) and it has its ULA" wait_for 30 agent_running ||
    give_up autotunnel-agent.service
  local pid uid caps
  pid="$(in_ct systemctl show -P MainPID autotunnel-agent.service)"
  uid="$(in_ct awk '/^Uid:/{print $2}' "/proc/$pid/status")"
  caps="$(in_ct awk '/^CapEff:/{print $2}' "/proc/$pid/status")"
  if [ "$as_root" = yes ]; then check "[$label] the agent runs as UID 0" test "$uid" = 0; else
    check "[$label] the agent runs as a dynamic user (uid $uid)" test "$uid" -ge 61184 -a "$uid" -le 65519
  fi
  check "[$label] the agent holds only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (CapEff $caps)" \
    test "$caps" = 0000000000001400
  check "[$label] the agent's bounding set is the same two" \
    test "$(in_ct awk '/^CapBnd:/{print $2}' "/proc/$pid/status")" = 0000000000001400
  check "[$label] its TUN device autotun0 is up" wait_for 15 tun_up
  check "[$label] its resolver listens on 127.0.0.153:53" \
    wait_for 15 in_ct dig +time=1 +tries=1 @127.0.0.153 "desktop.alice.$ZONE" AAAA +short
  check "[$label] its records are published (dig -y ... AAAA desktop.alice.$ZONE)" wait_for 30 published
  echo "     [$label] AAAA $(aaaa | head -n1), TUN: $(in_ct ip -brief addr show dev autotun0 2>/dev/null | tr -s ' ')"
  if [ "$as_root" = yes ]; then
    check "[$label] /etc/resolv.conf names the agent's resolver" wait_for 15 grep -q '^nameserver 127.0.0.153' "$root/etc/resolv.conf"
    check "[$label] status says the system resolver is set" wait_for 15 resolver_set
  else
    check "[$label] /etc/resolv.conf is left alone" cmp -s "$root/etc/resolv.conf" <(printf '%s' "$ORIG_RESOLV")
  fi
  check "[$label] systemctl stop" in_ct systemctl stop autotunnel-agent.service
  check "[$label] the records are deleted on stop" wait_for 15 unpublished
  check "[$label] the TUN device is gone" bash -c "! ip -n $netns link show dev autotun0 >/dev/null 2>&1"
  check "[$label] /etc/resolv.conf is byte for byte as before" cmp -s "$root/etc/resolv.conf" <(printf '%s' "$ORIG_RESOLV")
  check "[$label] the unit stopped cleanly (Result=success, no restart)" \
    test "$(in_ct systemctl show -P Result autotunnel-agent.service)/$(in_ct systemctl show -P NRestarts autotunnel-agent.service)" = success/0
  local errs
  errs="$(in_ct journalctl -u autotunnel-agent.service --after-cursor="$cursor" -o cat --no-pager | grep -E '"level":(50|60)|Failed with result|[Ff]ailed to' || true)"
  if [ -z "$errs" ]; then ok "[$label] the journal has no error"; else bad "[$label] the journal has errors:"; echo "$errs" | head -n 20; fi
  echo "     [$label] warnings:"
  in_ct journalctl -u autotunnel-agent.service --after-cursor="$cursor" -o cat --no-pager | grep '"level":40' | cut -c1-400 | sed 's/^/       /'
  in_ct systemd-analyze security autotunnel-agent.service --no-pager 2>/dev/null | tail -n1 | sed "s/^/     [$label] /"
}
run_agent dynamic-user no --system-resolver off
run_agent resolv.conf yes

# 5. Single sign-on (--sso-user): the agent writes /etc/krb5.conf, /etc/krb5.keytab, /etc/ssh drop-ins and the host
# certificate, runs krb5kdc on port 88, and on stop puts every file back as it was.
SSO_FILES=(/etc/krb5.conf /etc/krb5.keytab /etc/ssh/sshd_config.d/autotunnel-sso.conf
  /etc/ssh/ssh_config.d/autotunnel-sso.conf /etc/ssh/ssh_known_hosts /etc/ssh/ssh_host_ed25519_key-cert.pub)
sso_snapshot() { for f in "${SSO_FILES[@]}"; do if [ -e "$root$f" ]; then echo "$f $(sha256sum <"$root$f")"; else echo "$f absent"; fi; done; }
sso_written() { grep -q 'BEGIN autotunnel sso' "$root/etc/krb5.conf" 2>/dev/null && [ -s "$root/etc/krb5.keytab" ] &&
  [ -f "$root/etc/ssh/sshd_config.d/autotunnel-sso.conf" ]; }
kdc_listens() { in_ct ss -Hln 'sport = :88' | grep -q .; }
kdc_gone() { in_ct ss -Hln 'sport = :88' >"$run/ss88" && [ ! -s "$run/ss88" ]; } # ss itself must succeed
in_ct useradd -m alice
sso_before="$(sso_snapshot)"
in_ct autotunnel install-service --agent "${AGENT[@]}" --sso-user alice >/dev/null
in_ct systemctl daemon-reload
cursor="$(in_ct journalctl -n 0 --show-cursor -o cat | sed -n 's/^-- cursor: //p')"
check "[sso] autotunnel-agent.service starts" in_ct systemctl start autotunnel-agent.service ||
  give_up autotunnel-agent.service
check "[sso] autotunnel status finds the agent" wait_for 30 agent_running || give_up autotunnel-agent.service
check "[sso] krb5.conf block, keytab and sshd drop-in written" wait_for 60 sso_written
check "[sso] krb5kdc listens on port 88" wait_for 30 kdc_listens
pid="$(in_ct systemctl show -P MainPID autotunnel-agent.service)"
# CAP_CHOWN 0, CAP_DAC_READ_SEARCH 2, CAP_FOWNER 3, CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12
check "[sso] the agent holds CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_CHOWN, CAP_FOWNER, CAP_DAC_READ_SEARCH only" \
  test "$(in_ct awk '/^CapEff:/{print $2}' "/proc/$pid/status")" = 000000000000140d
check "[sso] systemctl stop" in_ct systemctl stop autotunnel-agent.service
check "[sso] every SSO file is as before (or absent again)" test "$(sso_snapshot)" = "$sso_before"
check "[sso] krb5kdc is gone" wait_for 10 kdc_gone
check "[sso] /etc/resolv.conf is byte for byte as before" cmp -s "$root/etc/resolv.conf" <(printf '%s' "$ORIG_RESOLV")
errs="$(in_ct journalctl -u autotunnel-agent.service --after-cursor="$cursor" -o cat --no-pager | grep -E '"level":(50|60)|Failed with result|[Ff]ailed to' || true)"
if [ -z "$errs" ]; then ok "[sso] the journal has no error"; else bad "[sso] the journal has errors:"; echo "$errs" | head -n 20; fi
echo "     [sso] warnings:"
in_ct journalctl -u autotunnel-agent.service --after-cursor="$cursor" -o cat --no-pager | grep '"level":40' | cut -c1-400 | sed 's/^/       /'
in_ct systemd-analyze security autotunnel-agent.service --no-pager 2>/dev/null | tail -n1 | sed 's/^/     [sso] /'

in_ct systemd-analyze security autotunnel-server.service --no-pager 2>/dev/null | tail -n1 | sed 's/^/     [server] /'
check "systemctl stop autotunnel-server" in_ct systemctl stop autotunnel-server.service
srv_errs="$(in_ct journalctl -u autotunnel-server.service -o cat --no-pager | grep -E '"level":(50|60)|Failed with result|[Ff]ailed to' || true)"
if [ -z "$srv_errs" ]; then ok "the server's journal has no error"; else bad "the server's journal has errors:"; echo "$srv_errs" | head -n 20; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
