#!/usr/bin/env bash
# A private, throwaway PostgreSQL cluster for the tests (Debian's `postgresql` package):
#
#   scripts/postgres.sh start DIR   initdb in DIR, start it on a free loopback port, print its admin URL
#   scripts/postgres.sh stop DIR    stop the cluster in DIR (if it runs) and remove DIR
#
# scripts/test.sh starts one for the whole run; the sandflow-test-postgres crate (tests/postgres)
# starts one per test process when SANDFLOW_TEST_POSTGRES_URL is not set. Both go through this
# script, so finding the binaries, running as the `postgres` user under root and picking a port are
# done in one place.
#
# The cluster trusts every local connection (superuser `postgres`, no password), listens on
# 127.0.0.1 only, keeps its socket in DIR, and runs with fsync off: it holds test data, nothing
# else, and is deleted by `stop`.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] && { [ "$1" = start ] || [ "$1" = stop ]; } || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
cmd=$1 dir=$2

# The binaries: initdb on PATH (with pg_ctl beside it), else the newest /usr/lib/postgresql/*/bin
# (Debian keeps them there, off PATH).
bin_dir() {
  local p d
  if p=$(command -v initdb 2>/dev/null) && [ -x "$(dirname "$p")/pg_ctl" ]; then
    dirname "$p"
    return
  fi
  while read -r d; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  return 1
}

# PostgreSQL refuses to run as root: under root, run it as the `postgres` system user (Debian's
# package creates it), in a DIR that user owns.
if [ "$(id -u)" = 0 ]; then
  # util-linux's runuser is in /usr/sbin, which a root PATH may lack.
  runuser=$(command -v runuser || echo /usr/sbin/runuser)
  as_pg() { "$runuser" -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

if [ "$cmd" = stop ]; then
  [ -e "$dir" ] || exit 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    # immediate: the data is thrown away next, so no shutdown checkpoint is worth waiting for.
    if bin=$(bin_dir); then
      (cd "$dir" && as_pg "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w >/dev/null) ||
        echo "postgres.sh: pg_ctl stop failed in $dir" >&2
    else
      echo "postgres.sh: no pg_ctl to stop the cluster in $dir" >&2
    fi
  fi
  rm -rf "$dir"
  exit 0
fi

bin=$(bin_dir) ||
  die "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): install Debian's \`postgresql\` package (scripts/install-deps.sh does)"
if [ "$(id -u)" = 0 ]; then
  id -u postgres >/dev/null 2>&1 ||
    die "running as root, and there is no \`postgres\` user to run PostgreSQL as: install Debian's \`postgresql\` package, which creates it"
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
chmod 700 "$dir"
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir"
  as_pg test -w "$dir" ||
    die "the postgres user cannot reach $dir: a parent directory is closed to it (put TMPDIR somewhere it can reach, e.g. /tmp)"
fi
# The postgres user may not be able to enter the caller's working directory.
cd "$dir"

as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; die "initdb failed in $dir"; }
as_pg tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF

# scripts/postgres.sh: a throwaway cluster for the tests.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
# Test processes run side by side, each with its own pools.
max_connections = 300
EOF

# A free port: a random one below Linux's ephemeral range (32768 and up, where outgoing connections
# take theirs), not listened on now; if another process takes it before postgres binds it, try another.
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 12000))
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
  if as_pg "$bin/pg_ctl" start -D "$dir/data" -l "$dir/data/postgres.log" -o "-p $port" -w -t 120 >/dev/null; then
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    exit 0
  fi
  grep -q "Address already in use" "$dir/data/postgres.log" 2>/dev/null ||
    { tail -n 20 "$dir/data/postgres.log" >&2 2>/dev/null || true; die "pg_ctl start failed in $dir"; }
done
die "no free port found for PostgreSQL after 20 tries"
