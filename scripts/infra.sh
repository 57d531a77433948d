#!/usr/bin/env bash
# Find or start the local infrastructure (PostgreSQL, Redis, RabbitMQ) on loopback.
# Used by `make run`, `make test` and CI on a fresh Debian/Ubuntu machine.
#
#   scripts/infra.sh up      find running servers or install+start them; writes .local/infra.env
#   scripts/infra.sh down    stop the servers this script started (data in .local/ is kept)
#   scripts/infra.sh status  print up/down per server (exit 1 if any is down)
#   scripts/infra.sh env     print .local/infra.env
#
# Ports (env overrides): CRM_PG_PORT=55432 CRM_REDIS_PORT=56379
#                        CRM_RABBITMQ_PORT=5672 CRM_RABBITMQ_MGMT_PORT=15672
# Pre-set CRM_POSTGRES / CRM_REDIS / CRM_RABBITMQ / CRM_RABBITMQ_MGMT are only verified and
# passed through. CRM_USE_DOCKER=1 (with a working `docker info`) uses docker/compose.yaml.
# All server data/logs live in <repo>/.local/ (gitignored); `rm -rf .local` after `down` resets.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
ENV_FILE="$LOCAL/infra.env"
COMPOSE_FILE="$ROOT/docker/compose.yaml"

PG_PORT="${CRM_PG_PORT:-55432}"
REDIS_PORT="${CRM_REDIS_PORT:-56379}"
RMQ_PORT="${CRM_RABBITMQ_PORT:-5672}"
RMQ_MGMT_PORT="${CRM_RABBITMQ_MGMT_PORT:-15672}"
RMQ_NODE="crm@localhost"
TIMEOUT="${CRM_INFRA_TIMEOUT:-120}"   # seconds to wait for a server to come up

PG_DIR="$LOCAL/pg"
REDIS_DIR="$LOCAL/redis"
RMQ_DIR="$LOCAL/rabbitmq"
RMQ_BIN=/usr/lib/rabbitmq/bin          # the real scripts, not the Debian /usr/sbin wrapper (see rmq_env)

log() { echo "infra: $*" >&2; }
die() { echo "infra: ERROR: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
SUDO=""; is_root || SUDO="sudo"        # CI runners: non-root with passwordless sudo

# ---------------------------------------------------------------- generic probes

# TCP connect only; `timeout` guards against hosts that drop packets.
# shellcheck disable=SC2016  # $0/$1 are expanded by the inner bash
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

# Wait until "$@" succeeds; $1 = what (for messages), $2 = log file(s) to show on failure.
wait_for() {
  local what="$1" logs="$2"; shift 2
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$what did not come up within ${TIMEOUT}s; last log lines:"
      for f in $logs; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }; done
      die "$what failed to start"
    fi
    sleep 0.5
  done
}

# Zombies count as dead: without a reaping init (containers, CI) exited daemons linger as Z.
pid_running() { kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }
pid_alive() {  # pid file
  local p; p="$(head -n1 "$1" 2>/dev/null)" || return 1
  [ -n "$p" ] && pid_running "$p"
}

# ---------------------------------------------------------------- apt

POLICY_RC_CREATED=""
cleanup() { if [ -n "$POLICY_RC_CREATED" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

# One `apt-get update` + one install for everything missing. A policy-rc.d returning 101
# stops the postinst scripts from starting the system-wide services (rabbitmq-server would
# otherwise grab port 5672 with /var/lib data, or hang without systemd). An existing
# policy-rc.d (Docker images ship one) is left alone.
apt_install() {
  [ $# -gt 0 ] || return 0
  command -v apt-get >/dev/null || die "need to install $* but apt-get is not available"
  log "installing: $* (apt)"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "$@" >/dev/null
  cleanup; POLICY_RC_CREATED=""
}

# ---------------------------------------------------------------- PostgreSQL

pg_bin() {  # bin dir matching an existing cluster's version, else the newest installed
  local v=""
  [ -s "$PG_DIR/PG_VERSION" ] && v="$(cat "$PG_DIR/PG_VERSION")"
  if [ -n "$v" ]; then
    [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ] || die ".local/pg is a PostgreSQL $v cluster but $v is not installed (delete .local/pg to re-init)"
    echo "/usr/lib/postgresql/$v/bin"
  else
    find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1
  fi
}
pg_installed() { [ -n "$(find /usr/lib/postgresql -maxdepth 3 -name initdb 2>/dev/null)" ]; }

# Postgres refuses to run as root: as root run its tools as the `postgres` OS user.
as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_answers() {  # host port
  if command -v pg_isready >/dev/null; then pg_isready -q -h "$1" -p "$2" -t 2; else port_open "$1" "$2"; fi
}

pg_start() {
  local bin; bin="$(pg_bin)"
  [ -n "$bin" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  mkdir -p "$PG_DIR"; touch "$LOCAL/pg.log"
  if is_root; then
    chmod 755 "$LOCAL"   # postgres must be able to traverse into .local
    [ "$(stat -c %U "$PG_DIR")" = postgres ] || chown -R postgres:postgres "$PG_DIR"
    chown postgres:postgres "$LOCAL/pg.log"
    runuser -u postgres -- test -w "$PG_DIR" \
      || die "the postgres OS user cannot write $PG_DIR (is a parent dir of the repo mode 700?)"
  fi
  chmod 700 "$PG_DIR"
  if [ ! -s "$PG_DIR/PG_VERSION" ]; then
    log "postgres: initdb $PG_DIR"
    local pw; pw="$(mktemp)"; echo postgres >"$pw"; chmod 644 "$pw"
    # -A trust: local + host (127.0.0.1/32, ::1/128) connections need no password.
    as_pg "$bin/initdb" -D "$PG_DIR" -U postgres --pwfile="$pw" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pw"
    # Throwaway dev/test cluster: durability is traded for speed (fsync, synchronous_commit,
    # full_page_writes off) - never use these settings for data you care about.
    cat >>"$PG_DIR/postgresql.conf" <<'EOF'

# --- added by scripts/infra.sh (local dev/test cluster) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''   # TCP only; /var/run/postgresql may not exist/be writable
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  log "postgres: starting on 127.0.0.1:$PG_PORT"
  # Port passed on the command line so CRM_PG_PORT works for an existing cluster too.
  as_pg "$bin/pg_ctl" -D "$PG_DIR" -l "$LOCAL/pg.log" -w -t "$TIMEOUT" -o "-p $PG_PORT" start >/dev/null 9>&- \
    || { tail -n 40 "$LOCAL/pg.log" >&2; die "postgres failed to start (log: .local/pg.log)"; }
}

pg_stop() {
  pid_alive "$PG_DIR/postmaster.pid" || return 0
  log "postgres: stopping"
  as_pg "$(pg_bin)/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null
}

# ---------------------------------------------------------------- Redis

redis_answers() {  # host port - speaks RESP over /dev/tcp so redis-cli isn't required
  # shellcheck disable=SC2016
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "PING\r\n" >&3 && IFS= read -r l <&3 &&
    [[ $l == +PONG* || $l == -NOAUTH* ]]' "$1" "$2" 2>/dev/null
}

redis_start() {
  mkdir -p "$REDIS_DIR"
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  # No persistence: it is a cache/test server.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$REDIS_DIR" \
    --save '' --appendonly no --logfile "$LOCAL/redis.log" --pidfile "$REDIS_DIR/redis.pid" 9>&-
  wait_for redis "$LOCAL/redis.log" redis_answers 127.0.0.1 "$REDIS_PORT"
}

redis_stop() {
  pid_alive "$REDIS_DIR/redis.pid" || return 0
  log "redis: stopping"
  local pid; pid="$(cat "$REDIS_DIR/redis.pid")"
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
  local n=0
  while pid_running "$pid" && [ $n -lt 50 ]; do sleep 0.2; n=$((n + 1)); done
}

# ---------------------------------------------------------------- RabbitMQ

# Environment for our private node. We call /usr/lib/rabbitmq/bin/* directly as the current
# user: the Debian /usr/sbin/rabbitmq-* wrapper, when run as root, does
# `cd /var/lib/rabbitmq; su rabbitmq ...` and would need .local owned by `rabbitmq` and the
# cookie in /var/lib/rabbitmq. HOME decides where the Erlang cookie lives; server and
# rabbitmqctl must share it.
rmq_env() {
  export HOME="$RMQ_DIR" \
    RABBITMQ_NODENAME="$RMQ_NODE" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$RMQ_PORT" \
    RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
    RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
    RABBITMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid" \
    RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

rmq_mgmt_answers() { curl -sf -m 3 -o /dev/null -u guest:guest "http://127.0.0.1:$RMQ_MGMT_PORT/api/overview"; }
rmq_answers() { port_open 127.0.0.1 "$RMQ_PORT" && rmq_mgmt_answers; }
# rabbitmq.pid (the Erlang VM) is written once booted; launcher.pid covers the boot itself.
rmq_ours_alive() { pid_alive "$RMQ_DIR/rabbitmq.pid" || pid_alive "$RMQ_DIR/launcher.pid"; }

# Launch only (non-blocking), so the slow Erlang boot overlaps with Postgres/Redis startup.
rmq_launch() {
  if rmq_ours_alive; then log "rabbitmq: our node is already booting"; return; fi
  port_open 127.0.0.1 "$RMQ_PORT" && die "port $RMQ_PORT is taken by a server without the management API on :$RMQ_MGMT_PORT (set CRM_RABBITMQ_PORT/CRM_RABBITMQ_MGMT_PORT or CRM_RABBITMQ*)"
  mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
  : >"$RMQ_DIR/rabbitmq-env.conf"   # keep /etc/rabbitmq/rabbitmq-env.conf out of it
  echo '[rabbitmq_management].' >"$RMQ_DIR/enabled_plugins"
  cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
# generated by scripts/infra.sh; guest/guest works from loopback only (default)
management.tcp.ip = 127.0.0.1
management.tcp.port = $RMQ_MGMT_PORT
EOF
  log "rabbitmq: starting node $RMQ_NODE on 127.0.0.1:$RMQ_PORT (management :$RMQ_MGMT_PORT)"
  # Foreground mode in its own session, detached from our terminal; output -> .local/rabbitmq.log
  # (fd 9 = our lock file: daemons must not inherit it, or the next `up` would block forever.)
  rm -f "$RMQ_DIR/rabbitmq.pid"
  ( rmq_env; cd "$RMQ_DIR"
    setsid nohup "$RMQ_BIN/rabbitmq-server" >>"$LOCAL/rabbitmq.log" 2>&1 </dev/null 9>&- &
    echo $! >"$RMQ_DIR/launcher.pid" )
}

rmq_wait() {
  local deadline=$((SECONDS + TIMEOUT))
  until rmq_answers; do
    # Give up at the deadline, or at once if our node died while booting.
    if [ "$SECONDS" -ge "$deadline" ] || { [ -f "$RMQ_DIR/launcher.pid" ] && ! rmq_ours_alive; }; then
      log "rabbitmq did not come up (AMQP :$RMQ_PORT + management :$RMQ_MGMT_PORT); last log lines:"
      for f in "$LOCAL/rabbitmq.log" "$RMQ_DIR/log/$RMQ_NODE.log"; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
      done
      die "rabbitmq failed to start"
    fi
    sleep 1
  done
}

rmq_stop() {
  rmq_ours_alive || return 0
  log "rabbitmq: stopping node $RMQ_NODE"
  # `stop <pidfile>` waits until the VM has exited. While still booting, TERM the launcher
  # script instead (its trap shuts the node down).
  ( rmq_env; cd "$RMQ_DIR"; "$RMQ_BIN/rabbitmqctl" -q -n "$RMQ_NODE" stop "$RMQ_DIR/rabbitmq.pid" ) >/dev/null 2>&1 \
    || { pid_alive "$RMQ_DIR/launcher.pid" && kill "$(cat "$RMQ_DIR/launcher.pid")"; } || true
  local n=0
  while rmq_ours_alive && [ $n -lt 60 ]; do sleep 0.5; n=$((n + 1)); done
  rm -f "$RMQ_DIR/launcher.pid"
}

# ---------------------------------------------------------------- external (pre-set) endpoints

kv() {  # value of key $1 (lower-case) in an ADO.NET-style "Key=Value;..." string $2
  local part k v; local IFS=';'
  for part in $2; do
    k="${part%%=*}"; k="${k//[[:space:]]/}"; v="${part#*=}"; v="${v//[[:space:]]/}"
    [ "${k,,}" = "$1" ] && { echo "$v"; return; }
  done
}
pg_ext_ok() {
  local h p; h="$(kv host "$CRM_POSTGRES")"; h="${h:-$(kv server "$CRM_POSTGRES")}"; p="$(kv port "$CRM_POSTGRES")"
  pg_answers "${h:-127.0.0.1}" "${p:-5432}"
}
redis_ext_ok() {
  local hp="${CRM_REDIS%%,*}"; [[ $hp == *:* ]] || hp="$hp:6379"
  redis_answers "${hp%:*}" "${hp##*:}"
}
rmq_ext_ok() {
  local hp="${CRM_RABBITMQ#*://}"; hp="${hp#*@}"; hp="${hp%%/*}"; [[ $hp == *:* ]] || hp="$hp:5672"
  port_open "${hp%:*}" "${hp##*:}" || return 1
  [ -z "${CRM_RABBITMQ_MGMT:-}" ] || curl -sf -m 3 -o /dev/null "${CRM_RABBITMQ_MGMT%/}/api/overview"
}

# ---------------------------------------------------------------- env file

q() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//\$/\\\$}"; printf '"%s"' "${s//\`/\\\`}"; }

write_env() {
  mkdir -p "$LOCAL"
  local pg="${CRM_POSTGRES:-Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Password=postgres}"
  local redis="${CRM_REDIS:-127.0.0.1:$REDIS_PORT}"
  local rmq="${CRM_RABBITMQ:-amqp://guest:guest@127.0.0.1:$RMQ_PORT/}"
  local mgmt="${CRM_RABBITMQ_MGMT:-}"
  [ -n "${CRM_RABBITMQ:-}" ] || mgmt="http://guest:guest@127.0.0.1:$RMQ_MGMT_PORT"
  {
    echo "# generated by scripts/infra.sh - source it: . .local/infra.env"
    echo "export CRM_POSTGRES=$(q "$pg")"
    echo "export CRM_REDIS=$(q "$redis")"
    echo "export CRM_RABBITMQ=$(q "$rmq")"
    [ -z "$mgmt" ] || echo "export CRM_RABBITMQ_MGMT=$(q "$mgmt")"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
  [ -n "$mgmt" ] || log "warning: CRM_RABBITMQ is set but CRM_RABBITMQ_MGMT is not (vhost tests need it)"
  cat "$ENV_FILE"
}

# ---------------------------------------------------------------- docker (optional)

use_docker() { [ "${CRM_USE_DOCKER:-}" = 1 ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; }

# ---------------------------------------------------------------- commands

lock() { mkdir -p "$LOCAL"; exec 9>"$LOCAL/.infra.lock"; flock 9; }  # serialise parallel make targets

cmd_up() {
  lock
  if use_docker; then
    log "docker: compose up"
    docker compose -f "$COMPOSE_FILE" up -d --wait --wait-timeout "$TIMEOUT"
    write_env; return
  fi

  # 1. What is already answering? (pre-set CRM_* vars are verified, never started)
  local need_pg="" need_redis="" need_rmq="" pkgs=()
  if [ -n "${CRM_POSTGRES:-}" ]; then pg_ext_ok || die "CRM_POSTGRES is set but does not answer: $CRM_POSTGRES"
  elif ! pg_answers 127.0.0.1 "$PG_PORT"; then need_pg=1; fi
  if [ -n "${CRM_REDIS:-}" ]; then redis_ext_ok || die "CRM_REDIS is set but does not answer: $CRM_REDIS"
  elif ! redis_answers 127.0.0.1 "$REDIS_PORT"; then need_redis=1; fi
  command -v curl >/dev/null || pkgs+=(curl)
  if [ -n "${CRM_RABBITMQ:-}" ]; then
    [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"; pkgs=()
    rmq_ext_ok || die "CRM_RABBITMQ/CRM_RABBITMQ_MGMT is set but does not answer: $CRM_RABBITMQ ${CRM_RABBITMQ_MGMT:-}"
  elif ! { command -v curl >/dev/null && rmq_answers; }; then need_rmq=1; fi

  # Servers this checkout did not start are used as they are: say so, since their data (and any
  # other checkout's services talking to them) are shared with whoever started them.
  if [ -z "${CRM_POSTGRES:-}" ] && [ -z "$need_pg" ] && ! pid_alive "$PG_DIR/postmaster.pid"; then
    log "postgres: using the server already listening on 127.0.0.1:$PG_PORT, not started by this checkout (another checkout's, or the machine's)"; fi
  if [ -z "${CRM_REDIS:-}" ] && [ -z "$need_redis" ] && ! pid_alive "$REDIS_DIR/redis.pid"; then
    log "redis: using the server already listening on 127.0.0.1:$REDIS_PORT, not started by this checkout"; fi
  if [ -z "${CRM_RABBITMQ:-}" ] && [ -z "$need_rmq" ] && ! rmq_ours_alive; then
    log "rabbitmq: using the broker already listening on 127.0.0.1:$RMQ_PORT, not started by this checkout"; fi

  # 2. Install what is missing, in one apt run.
  [ -z "$need_pg" ] || pg_installed || pkgs+=(postgresql)
  [ -z "$need_redis" ] || command -v redis-server >/dev/null || pkgs+=(redis-server)
  [ -z "$need_rmq" ] || [ -x "$RMQ_BIN/rabbitmq-server" ] || pkgs+=(rabbitmq-server)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"

  # 3. Start: RabbitMQ first (slowest, boots in the background), then wait for it last.
  [ -z "$need_rmq" ] || rmq_launch
  [ -z "$need_pg" ] || pg_start
  [ -z "$need_redis" ] || redis_start
  [ -z "$need_rmq" ] || rmq_wait

  write_env
}

cmd_down() {
  lock
  if use_docker; then docker compose -f "$COMPOSE_FILE" down; return; fi
  rmq_stop; redis_stop; pg_stop
}

cmd_status() {
  local rc=0 line
  show() {  # name up? detail
    if [ "$2" = 1 ]; then line="up  "; else line="down"; rc=1; fi
    printf '%-9s %s  %s\n' "$1" "$line" "$3"
  }
  local ok
  if [ -n "${CRM_POSTGRES:-}" ]; then ok=0; pg_ext_ok && ok=1; show postgres $ok "external: $CRM_POSTGRES"
  else ok=0; pg_answers 127.0.0.1 "$PG_PORT" && ok=1
    show postgres $ok "127.0.0.1:$PG_PORT$(pid_alive "$PG_DIR/postmaster.pid" && echo " (ours: .local/pg)")"; fi
  if [ -n "${CRM_REDIS:-}" ]; then ok=0; redis_ext_ok && ok=1; show redis $ok "external: $CRM_REDIS"
  else ok=0; redis_answers 127.0.0.1 "$REDIS_PORT" && ok=1
    show redis $ok "127.0.0.1:$REDIS_PORT$(pid_alive "$REDIS_DIR/redis.pid" && echo " (ours: .local/redis)")"; fi
  if [ -n "${CRM_RABBITMQ:-}" ]; then ok=0; rmq_ext_ok && ok=1; show rabbitmq $ok "external: $CRM_RABBITMQ"
  else ok=0; rmq_answers && ok=1
    show rabbitmq $ok "127.0.0.1:$RMQ_PORT mgmt :$RMQ_MGMT_PORT$(rmq_ours_alive && echo " (ours: $RMQ_NODE)")"; fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cat "$ENV_FILE" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
