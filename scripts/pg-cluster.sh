#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and benchmarks (never the system service): initdb in a temporary
# directory, run as the unprivileged `postgres` user, listening on 127.0.0.1 on a private port and on a unix
# socket inside the directory, fsync on (the durability tests need real commits).
#
#   scripts/pg-cluster.sh start [DIR]      creates and starts a cluster; prints DIR on line 1 and its URL on line 2
#   scripts/pg-cluster.sh url DIR          prints the URL again
#   scripts/pg-cluster.sh restart DIR [fast|immediate]   pg_ctl restart -m MODE (immediate = a crash)
#   scripts/pg-cluster.sh stop DIR [fast|immediate]      stops it (leaves the files)
#   scripts/pg-cluster.sh destroy DIR      stops it (immediate) and removes DIR
#   scripts/pg-cluster.sh standby PRIMARY_DIR [DIR]   a synchronous streaming standby of PRIMARY_DIR (pg_basebackup
#                                          -R, its own port; the primary's COMMITs then wait for it); prints DIR, URL
#   scripts/pg-cluster.sh promote DIR      pg_ctl promote: the standby becomes a primary (returns when it is)
#   scripts/pg-cluster.sh kill DIR         SIGKILL of the postmaster and every process of its group (a machine lost)
#   scripts/pg-cluster.sh freeze DIR       SIGSTOP of the same (a machine gone silent: connections stay open, nothing
#                                          answers); destroy still removes it
#
# Needs Debian's postgresql-15 (scripts/deps.sh installs it) and root or the postgres user. The URL is
# postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres; PGPORT and PGOPTS may set the port and extra -c options.
set -euo pipefail

BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PG_USER:-postgres}

die() { echo "pg-cluster: $*" >&2; exit 1; }
[ -x "$BIN/initdb" ] || die "no $BIN/initdb: apt-get install --no-install-recommends postgresql-15 (scripts/deps.sh)"

as_pg() {
  if [ "$(id -un)" = "$PG_USER" ]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi
}

url() {
  local dir=$1
  [ -f "$dir/url" ] || die "$dir holds no cluster made by this script"
  cat "$dir/url"
}

ctl() {
  local dir=$1; shift
  as_pg "$BIN/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/log" "$@"
}

opts() {
  local dir=$1 port=$2
  # fsync and synchronous_commit stay on (the defaults): an acknowledged commit is on disk.
  echo "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c max_connections=200 ${PGOPTS:-}"
}

# SQL on the cluster in DIR (as its superuser, over TCP with its password); one value per line.
sql() {
  local dir=$1; shift
  PGPASSWORD=$(cat "$dir/pw") as_pg "$BIN/psql" -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(cat "$dir/port")" \
    -U postgres -d postgres -c "$1"
}

# A new directory for a cluster (DIR, else a temporary one) with its socket directory.
newdir() {
  local dir=${1:-}
  if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/autotunnel-pg-XXXXXX); fi
  mkdir -p "$dir"
  chown "$PG_USER" "$dir" 2>/dev/null || true
  chmod 700 "$dir"
  install -d -o "$PG_USER" -m 700 "$dir/sock"
  echo "$dir"
}

# Starts the cluster in DIR on a private port: PGPORT, else random ones until one binds (another suite may hold
# the first pick); writes DIR/port and DIR/url.
start_on_a_port() {
  local dir=$1 port started=
  for _ in 1 2 3 4 5 6 7 8; do
    port=${PGPORT:-$((20000 + RANDOM % 30000))}
    if ctl "$dir" -o "$(opts "$dir" "$port")" start >/dev/null 2>&1; then started=1; break; fi
    [ -n "${PGPORT:-}" ] && break
  done
  [ -n "$started" ] || die "could not start: $(tail -5 "$dir/log")"
  echo "$port" >"$dir/port"
  echo "postgres://postgres:$(cat "$dir/pw")@127.0.0.1:$port/postgres" >"$dir/url"
}

# The postmaster of DIR when it runs (its pid, checked against the command line: pids are reused).
postmaster() {
  local dir=$1 pid
  pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && grep -qaF -- "$dir/data" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# Sends SIG to the postmaster of DIR and its process group (pg_ctl makes the postmaster a session leader, so the
# group is the postmaster and its children and nothing else).
signal_cluster() {
  local dir=$1 sig=$2 pid
  pid=$(postmaster "$dir") || return 1
  if [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]; then kill "-$sig" -- "-$pid" 2>/dev/null || true
  else kill "-$sig" "$pid" $(ps -o pid= --ppid "$pid") 2>/dev/null || true; fi
}

kill_cluster() {
  local dir=$1
  signal_cluster "$dir" KILL || return 0
  for _ in $(seq 50); do postmaster "$dir" >/dev/null || break; sleep 0.1; done
}

# A start or standby that fails removes the temporary directory it made (the caller never learns its name).
made=
ok=
undo() { if [ -n "$made" ] && [ -z "$ok" ]; then kill_cluster "$made"; rm -rf "$made"; fi; }
trap undo EXIT

cmd=${1:-}
case "$cmd" in
  start)
    dir=$(newdir "${2:-}")
    [ -n "${2:-}" ] || made=$dir
    pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$pw" >"$dir/pw"
    chown "$PG_USER" "$dir/pw"; chmod 600 "$dir/pw"
    as_pg "$BIN/initdb" -D "$dir/data" -A scram-sha-256 --pwfile="$dir/pw" -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
      die "initdb failed: $(tail -5 "$dir/initdb.log")"
    start_on_a_port "$dir"
    ok=1
    echo "$dir"
    url "$dir"
    ;;
  standby)
    primary=${2:?PRIMARY_DIR}
    url "$primary" >/dev/null
    dir=$(newdir "${3:-}")
    [ -n "${3:-}" ] || made=$dir
    install -o "$PG_USER" -m 600 "$primary/pw" "$dir/pw"
    # -R writes primary_conninfo (with the password) and standby.signal; -X stream copies the WAL made meanwhile.
    PGPASSWORD=$(cat "$primary/pw") as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$(cat "$primary/port")" -U postgres \
      -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 ||
      die "pg_basebackup failed: $(tail -5 "$dir/basebackup.log")"
    # Once promoted, this server must not wait for a standby of its own that does not exist (a second standby
    # copies the primary's setting).
    as_pg sed -i '/^synchronous_standby_names/d' "$dir/data/postgresql.auto.conf"
    start_on_a_port "$dir"
    for _ in $(seq 100); do
      [ "$(sql "$primary" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" -gt 0 ] && break
      sleep 0.1
    done
    # Synchronous: the primary's COMMIT returns once this standby has flushed it (synchronous_commit = on).
    sql "$primary" "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
    sql "$primary" "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 100); do
      [ "$(sql "$primary" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" -gt 0 ] && break
      sleep 0.1
    done
    [ "$(sql "$primary" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" -gt 0 ] ||
      die "the standby in $dir did not become synchronous: $(tail -5 "$dir/log")"
    ok=1
    echo "$dir"
    url "$dir"
    ;;
  promote)
    dir=${2:?DIR}
    as_pg "$BIN/pg_ctl" -D "$dir/data" -w -t 60 promote >/dev/null
    ;;
  kill)
    dir=${2:?DIR}
    url "$dir" >/dev/null
    kill_cluster "$dir"
    ;;
  freeze)
    dir=${2:?DIR}
    url "$dir" >/dev/null
    signal_cluster "$dir" STOP || die "$dir: not running"
    ;;
  url) url "${2:?DIR}" ;;
  restart)
    dir=${2:?DIR}
    ctl "$dir" -m "${3:-fast}" -o "$(opts "$dir" "$(cat "$dir/port")")" restart >/dev/null
    ;;
  stop)
    dir=${2:?DIR}
    ctl "$dir" -m "${3:-fast}" stop >/dev/null
    ;;
  destroy)
    dir=${2:?DIR}
    [ -f "$dir/url" ] || [ -d "$dir/data" ] || die "$dir holds no cluster made by this script"
    # A frozen cluster must run again to stop (pg_ctl would wait for it).
    signal_cluster "$dir" CONT || true
    if [ -f "$dir/data/postmaster.pid" ]; then ctl "$dir" -m immediate stop >/dev/null 2>&1 || true; fi
    # A postmaster (and its group) that pg_ctl could not stop.
    kill_cluster "$dir"
    rm -rf "$dir"
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = "-h" ] || [ "$cmd" = "--help" ] || exit 2
    ;;
esac
