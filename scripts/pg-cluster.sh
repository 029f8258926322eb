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

cmd=${1:-}
case "$cmd" in
  start)
    dir=${2:-}
    if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/autotunnel-pg-XXXXXX); fi
    mkdir -p "$dir"
    chown "$PG_USER" "$dir" 2>/dev/null || true
    chmod 700 "$dir"
    install -d -o "$PG_USER" -m 700 "$dir/sock"
    pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$pw" >"$dir/pw"
    chown "$PG_USER" "$dir/pw"; chmod 600 "$dir/pw"
    as_pg "$BIN/initdb" -D "$dir/data" -A scram-sha-256 --pwfile="$dir/pw" -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
      die "initdb failed: $(tail -5 "$dir/initdb.log")"
    # A private port: PGPORT, else random ones until one binds (another suite may hold the first pick).
    started=
    for _ in 1 2 3 4 5 6 7 8; do
      port=${PGPORT:-$((20000 + RANDOM % 30000))}
      if ctl "$dir" -o "$(opts "$dir" "$port")" start >/dev/null 2>&1; then started=1; break; fi
      [ -n "${PGPORT:-}" ] && break
    done
    [ -n "$started" ] || die "could not start: $(tail -5 "$dir/log")"
    echo "$port" >"$dir/port"
    echo "postgres://postgres:$pw@127.0.0.1:$port/postgres" >"$dir/url"
    echo "$dir"
    url "$dir"
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
    if [ -f "$dir/data/postmaster.pid" ]; then ctl "$dir" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$dir"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = "-h" ] || [ "$cmd" = "--help" ] || exit 2
    ;;
esac
