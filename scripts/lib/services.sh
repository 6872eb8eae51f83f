# Shared by scripts/bench-load (sourced): installs and starts private PostgreSQL and Redis
# instances on loopback. Needs $WORK (a scratch directory, removed by the caller).

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to install packages: $*" >&2; exit 1; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pgbench" ]; then
      echo "$d"; return 0
    fi
  done
  return 1
}

# Sets PG_BIN (installing the Debian packages when missing) and RUN_AS (the unprivileged
# user PostgreSQL runs as when we are root).
ensure_postgres() {
  if ! PG_BIN=$(pg_bindir); then
    log "installing PostgreSQL (Debian packages)"
    apt_install postgresql
    PG_BIN=$(pg_bindir)
  fi
  RUN_AS=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    RUN_AS=(runuser -u postgres --)
  fi
}

ensure_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    log "installing Redis (Debian packages)"
    apt_install redis-server redis-tools
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# pg_start DATA PORT EXTRA_OPTS: initialises DATA when empty, then starts PostgreSQL.
pg_start() {
  local data=$1 port=$2 opts=$3
  mkdir -p "$data"
  [ "$(id -u)" -eq 0 ] && chown postgres "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1 \
      || { cat "$WORK/initdb.log"; exit 1; }
  fi
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 300 start -o \
    "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$data $opts" >/dev/null \
    || { tail -50 "$data/server.log"; exit 1; }
}

# pg_stop DATA MODE (fast | immediate)
pg_stop() {
  if [ -f "$1/postmaster.pid" ]; then
    "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$1" -m "${2:-fast}" -w stop >/dev/null 2>&1 || true
  fi
}

# redis_start PORT: an empty Redis without persistence, its pid in $WORK/redis.pid.
redis_start() {
  redis-server --bind 127.0.0.1 --port "$1" --save '' --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log" --dir "$WORK"
  for _ in $(seq 50); do
    if redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; then return 0; fi
    sleep 0.1
  done
  cat "$WORK/redis.log"; exit 1
}

redis_stop() {
  local pid
  pid=$(cat "$WORK/redis.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$WORK/redis.pid"
}
