#!/usr/bin/env bash
# Benchmarks vevee-attributes on SQLite and PostgreSQL against raw baselines.
#
#   bench/run.sh
#
# Builds the release binaries, then for each database: runs the raw baselines
# (pgbench custom scripts for PostgreSQL, a raw sqlx loop for SQLite), starts
# the server on a fresh database, declares a0..a9 and seeds the persons, runs
# every RPC at each concurrency, samples the server's RSS idle and under 1,000
# concurrent streams, and (PostgreSQL) compares 10 thousand with 1 million
# persons; SetAttribute and GetAttributes also over the REST face; and
# SetAttribute as a browser writes it (public key, identity verification
# required, every write signed). It ends by printing a markdown report, also written to
# $BENCH_OUT/report.md next to the raw JSON lines (results.jsonl).
#
# Needs: cargo, a PostgreSQL superuser at $BENCH_PG_URL, psql and pgbench.
# Settings (environment):
#   CARGO_TARGET_DIR        cargo's target directory (default: ./target)
#   BENCH_SECONDS=5         measured seconds per run (after 1 s of warm-up)
#   BENCH_CONCURRENCY="1 16 64 256"
#   BENCH_POPULATION=10000  persons of the matrix
#   BENCH_MILLION=1         0 skips the 1-million-person comparison
#   BENCH_BIG_POPULATION=1000000
#   BENCH_CONNECTIONS=4     HTTP/2 connections of the load generator
#   BENCH_THREADS=2         OS threads of the load generator (one per core)
#   BENCH_SYSTEMS="sqlite postgres"
#   BENCH_PG_URL=postgres://postgres@127.0.0.1:5432  (a database is created and dropped)
#   BENCH_PG_MAX_CLIENTS=90 pgbench clients at most (max_connections is 100 by default)
#   BENCH_PORT=50151        the server's port on 127.0.0.1
#   BENCH_OUT=bench/results/<UTC time>
#   BENCH_SERVER_ARGS="--worker-threads 1"  extra flags for `vevee-attributes serve`
#                           (one thread: the server shares 2 cores with PostgreSQL
#                           and the load generator; "" runs the default, one per core)
#   BENCH_RSS_RPC=set-attribute  the RPC of the 1,000-stream memory sample
#   BENCH_PURGE=1           0 skips the purge step (PostgreSQL): an attribute set on
#                           BENCH_PURGE_PERSONS persons is purged while SetAttribute
#                           runs at 64 concurrent (default: the 1 million persons, or
#                           the matrix's population with BENCH_MILLION=0)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release"

SECS=${BENCH_SECONDS:-5}
WARMUP=1
CONCURRENCY=${BENCH_CONCURRENCY:-1 16 64 256}
POPULATION=${BENCH_POPULATION:-10000}
MILLION=${BENCH_MILLION:-1}
BIG_POPULATION=${BENCH_BIG_POPULATION:-1000000}
CONNECTIONS=${BENCH_CONNECTIONS:-4}
THREADS=${BENCH_THREADS:-2}
SYSTEMS=${BENCH_SYSTEMS:-sqlite postgres}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_MAX_CLIENTS=${BENCH_PG_MAX_CLIENTS:-90}
PORT=${BENCH_PORT:-50151}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
SERVER_ARGS=${BENCH_SERVER_ARGS---worker-threads 1}
RSS_RPC=${BENCH_RSS_RPC:-set-attribute}
PURGE=${BENCH_PURGE:-1}
ADDR="127.0.0.1:$PORT"
# Public-key limits far above what a run sends, so that set-attribute-browser
# pays for the buckets (they stay on) but is never refused by them.
PK_RATES="--public-key-rate 1000000/s,burst=1000000 --public-key-rate-per-person 100000/s,burst=100000"

SECONDS=0
LOADAVG=$(cut -d ' ' -f 1-3 /proc/loadavg)
log() { echo "== [${SECONDS}s] $*" >&2; }
die() {
  echo "bench: $*" >&2
  exit 1
}

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vevee-bench.XXXXXX")
SERVER_PID=""
PG_DB=""

cleanup() {
  local status=$?
  [[ -n "$SERVER_PID" ]] && stop_server
  if [[ -n "$PG_DB" ]]; then
    psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

record_rss() { # system phase kib load-description
  printf '{"tags":{"suite":"rss","system":"%s","phase":"%s"},"rss_kib":%s,"load":"%s"}\n' \
    "$1" "$2" "$3" "$4" >>"$RESULTS"
  log "$1 RSS $2: $(($3 / 1024)) MiB"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start_server() { # name database-url
  local name=$1 url=$2
  port_open && die "something already listens on $ADDR (set BENCH_PORT)"
  # A workspace made with the CLI, as an operator would (a server whose
  # stderr is not a terminal prints no bootstrap keys): its live keys.
  env -u DATABASE_URL "$BIN/vevee-attributes" migrate --database-url "$url" >/dev/null \
    || die "migrate failed on $url"
  local created
  created=$(env -u DATABASE_URL "$BIN/vevee-attributes" workspace create bench --json --database-url "$url") \
    || die "workspace create failed on $url"
  KEY=$(live_key "$created" secret)
  PUBLIC_KEY=$(live_key "$created" public)
  export VEVEE_KEY=$KEY
  # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags.
  env -u NO_BOOTSTRAP -u DATABASE_URL RUST_LOG="${RUST_LOG:-info}" \
    "$BIN/vevee-attributes" serve --database-url "$url" --grpc-addr "$ADDR" $PK_RATES $SERVER_ARGS \
    2>"$OUT/$name-server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    port_open && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited; see $OUT/$name-server.log"
    sleep 0.1
  done
  port_open || die "the server did not listen within 30 s; see $OUT/$name-server.log"
}

live_key() { # `workspace create --json` output, kind (secret|public)
  python3 -c 'import json, sys; print(next(k["key"] for k in json.loads(sys.argv[1])["keys"] if k["kind"] == sys.argv[2] and k["mode"] == "live"))' "$1" "$2"
}

stop_server() {
  local pid=$SERVER_PID
  SERVER_PID=""
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# A checkpoint before every PostgreSQL measurement (pgbench's too), so that
# no run pays for a checkpoint a previous run started: after one, the first
# change to each page writes a full-page image to the WAL, which moved the
# same figure by up to 20% between runs.
checkpoint() { [[ -n "$PG_DB" ]] && psql -q "$PG_URL/$PG_DB" -c CHECKPOINT >/dev/null; true; }

load() { # system suite rpc concurrency [more vevee-bench flags]
  local system=$1 suite=$2 rpc=$3 c=$4
  shift 4
  [[ "$system" == postgres ]] && checkpoint
  "$BIN/vevee-bench" load --addr "$ADDR" --rpc "$rpc" --concurrency "$c" \
    --connections "$CONNECTIONS" --threads "$THREADS" \
    --duration "${SECS}s" --warmup "${WARMUP}s" --population "$POPULATION" \
    --json --tag "system=$system" --tag "suite=$suite" "$@" >>"$RESULTS"
}

# Issue 16's target, against set-attribute of the matrix at 64: SetAttribute
# with the public key, identity verification required, every request
# signed (the load generator signs each person once, before the run). The
# CLI sets the workspace up on the database, as an operator would; the
# server applies it within its --cache-ttl (2 s by default).
browser_writes() { # system database-url
  local system=$1 url=$2 secret
  local cli=("$BIN/vevee-attributes")
  "${cli[@]}" settings set client-attribute-writes on --database-url "$url" >/dev/null
  "${cli[@]}" settings set identity-verification required --database-url "$url" >/dev/null
  secret=$("${cli[@]}" identity-secrets create --json --database-url "$url" |
    sed -n 's/^ *"secret": *"\([^"]*\)".*/\1/p')
  [[ -n "$secret" ]] || die "identity-secrets create printed no secret"
  sleep 3
  load "$system" writes set-attribute-browser 64 --key "$PUBLIC_KEY" --identity-secret "$secret"
}

matrix() { # system database-url
  for rpc in set-attribute set-attributes get-attributes health; do
    for c in $CONCURRENCY; do
      load "$1" matrix "$rpc" "$c"
    done
  done
  load "$1" zipf set-attribute 64 --distribution zipf --zipf-exponent 1.0
  # The REST face on the same server, right after its gRPC figures: the same
  # calls as JSON over HTTP/1.1 keep-alive, one connection per client.
  for rpc in set-attribute get-attributes; do
    for c in $CONCURRENCY; do
      load "$1" rest "$rpc" "$c" --protocol rest
    done
  done
  # Issue 13's targets, against set-attribute of the matrix at 64; last, as
  # the increments add an eleventh value to the persons they touch.
  load "$1" writes update-increment 64
  load "$1" writes set-attribute-request-id 64
  browser_writes "$1" "$2"
}

rss_under_load() { # system
  local system=$1 peak=0 kib pid
  "$BIN/vevee-bench" load --addr "$ADDR" --rpc "$RSS_RPC" --concurrency 1000 \
    --connections 10 --threads "$THREADS" --duration "${SECS}s" --warmup "${WARMUP}s" \
    --population "$POPULATION" --json --tag "system=$system" --tag suite=streams1000 \
    >>"$RESULTS" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    kib=$(rss_kib "$SERVER_PID")
    ((kib > peak)) && peak=$kib
    sleep 0.2
  done
  wait "$pid"
  record_rss "$system" "1000 streams" "$peak" "peak while $RSS_RPC runs at 1,000 concurrent over 10 connections"
  sleep 2
  record_rss "$system" "idle after load" "$(rss_kib "$SERVER_PID")" "none"
}

serve_and_measure() { # system url
  local system=$1 url=$2
  log "$system: starting the server"
  start_server "$system" "$url"
  sleep 2
  record_rss "$system" "idle" "$(rss_kib "$SERVER_PID")" "none (fresh start)"
  log "$system: declaring a0..a9 and seeding $POPULATION persons"
  "$BIN/vevee-bench" setup --addr "$ADDR" --population "$POPULATION" --concurrency 64
  log "$system: the matrix"
  matrix "$system" "$url"
  log "$system: 1,000 concurrent streams"
  rss_under_load "$system"
}

# Issue 14's target: SetAttribute at 64 concurrent with and without a purge
# of another attribute set on $1 persons (of the live persons the server's
# database holds), and the purge's own rate. Writes $OUT/purge.md for the
# report; the load results go to $OUT/purge.jsonl, apart from the matrix.
purge_step() { # persons
  local persons=$1 api="http://$ADDR/api/v1" op id p99_without p99_during left
  local auth="authorization: Bearer $VEVEE_KEY" json='content-type: application/json'
  log "postgres: purge of an attribute set on $persons persons, SetAttribute at 64 concurrent"
  curl -fsS -X POST "$api/attributes/definitions" -H "$auth" -H "$json" \
    -d '{"key":"purged","type":"ATTRIBUTE_TYPE_TEXT"}' >/dev/null
  psql -q "$DB_URL" -v ON_ERROR_STOP=1 -v n="$persons" >/dev/null <<'SQL'
INSERT INTO attribute_values (workspace_id, person_id, attribute_key, value, updated_at, etag)
SELECT workspace_id, person_id, 'purged', '"x"', now(), gen_random_uuid()
FROM persons WHERE mode = 'live' ORDER BY person_id LIMIT :n;
VACUUM ANALYZE attribute_values;
CHECKPOINT;
SQL
  curl -fsS -X POST "$api/attributes/definitions/purged:archive" -H "$auth" -H "$json" -d '{}' >/dev/null
  purge_load() { # tag
    "$BIN/vevee-bench" load --addr "$ADDR" --rpc set-attribute --concurrency 64 \
      --connections "$CONNECTIONS" --threads "$THREADS" --duration "${SECS}s" \
      --warmup "${WARMUP}s" --population "$POPULATION" --json \
      --tag system=postgres --tag suite=purge --tag "purge=$1" >>"$OUT/purge.jsonl"
    tail -n 1 "$OUT/purge.jsonl" | jq -r '.latency_ms.p99'
  }
  p99_without=$(purge_load without)
  op=$(curl -fsS -X DELETE "$api/attributes/definitions/purged" -H "$auth")
  id=$(jq -r '.name | sub("^operations/"; "")' <<<"$op")
  p99_during=$(purge_load during)
  # Still running when the load ended: the p99 above saw the purge throughout.
  left=$(curl -fsS "$api/operations/$id" -H "$auth" | jq -r '.done')
  for _ in $(seq 1 36000); do
    op=$(curl -fsS "$api/operations/$id" -H "$auth")
    [[ $(jq -r '.done' <<<"$op") == true ]] && break
    sleep 0.1
  done
  echo "$op" >"$OUT/purge-operation.json"
  jq -r --arg without "$p99_without" --arg during "$p99_during" --arg running "$left" '
    def secs: if test("\\.") then (split(".") as $p
        | ($p[0] + "Z" | fromdateiso8601) + ("0." + ($p[1] | rtrimstr("Z")) | tonumber))
      else fromdateiso8601 end;
    .metadata as $m
    | (((($m.endTime // $m.updateTime) | secs) - ($m.startTime | secs)) * 100 | round / 100) as $s
    | "### Purge (PostgreSQL)\n\n"
      + "| SetAttribute @64 p99 without | during the purge | × | values purged | seconds | values/s | error |\n"
      + "|---|---|---|---|---|---|---|\n"
      + "| \($without) ms | \($during) ms | \(($during | tonumber) / ($without | tonumber) * 100 | round / 100) "
      + "| \($m.valuesDeleted) | \($s) | \(if $s > 0 then (($m.valuesDeleted | tonumber) / $s | round) else "-" end) "
      + "| \(.error.message // "none") |\n\n"
      + (if $running == "true" then "The purge ended before the load did: only part of the load ran beside it.\n"
         elif $running == "false" then "The purge was still running when the load ended.\n"
         else "" end)' "$OUT/purge-operation.json" >"$OUT/purge.md"
}

# --- build -------------------------------------------------------------------

log "cargo build --release (target: $CARGO_TARGET_DIR)"
# Both binaries: the service (the root package) and the load generator
# (bench/vevee-bench, a member of the workspace).
cargo build --release --workspace --bins --quiet

# --- SQLite ------------------------------------------------------------------

if [[ " $SYSTEMS " == *" sqlite "* ]]; then
  log "sqlite: raw sqlx baselines (WAL, synchronous=FULL, one writer, BEGIN IMMEDIATE)"
  for op in upsert1 upsert10 select10; do
    for c in $CONCURRENCY; do
      "$BIN/vevee-bench" raw-sqlite --file "$WORK/raw.db" --op "$op" --concurrency "$c" \
        --duration "${SECS}s" --warmup "${WARMUP}s" --population "$POPULATION" \
        --json --tag system=sqlite --tag suite=raw --tag "clients=$c" >>"$RESULTS"
    done
  done
  rm -f "$WORK"/raw.db*
  serve_and_measure sqlite "sqlite://$WORK/service.db"
  stop_server
fi

# --- PostgreSQL --------------------------------------------------------------

if [[ " $SYSTEMS " == *" postgres "* ]]; then
  PG_DB="vevee_bench_$(date +%s)_$$"
  DB_URL="$PG_URL/$PG_DB"
  log "postgres: creating database $PG_DB"
  psql -q "$PG_URL/postgres" -c "CREATE DATABASE $PG_DB" >/dev/null

  log "postgres: pgbench baselines"
  psql -q "$DB_URL" -v ON_ERROR_STOP=1 -v pop="$POPULATION" -f bench/pgbench/setup.sql >/dev/null
  for op in upsert1 upsert10 select10; do
    # A short warm-up of each script, not measured.
    pgbench -n -M prepared -T "$WARMUP" -c 16 -j 2 -D pop="$POPULATION" \
      -f "bench/pgbench/$op.sql" "$DB_URL" >/dev/null 2>&1
    for c in $CONCURRENCY; do
      clients=$((c < PG_MAX_CLIENTS ? c : PG_MAX_CLIENTS))
      jobs=$((clients > 1 ? 2 : 1))
      rm -f "$WORK"/pgb.*
      checkpoint
      pgbench -n -M prepared -T "$SECS" -c "$clients" -j "$jobs" -D pop="$POPULATION" \
        -f "bench/pgbench/$op.sql" -l --log-prefix "$WORK/pgb" "$DB_URL" \
        >"$WORK/pgbench.out" 2>&1 || {
        cat "$WORK/pgbench.out" >&2
        die "pgbench failed"
      }
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out" | head -n 1)
      "$BIN/vevee-bench" pgbench-log --op "$op" --concurrency "$c" --tps "$tps" \
        --duration "${SECS}s" --population "$POPULATION" \
        --tag system=postgres --tag suite=raw --tag "clients=$clients" "$WORK"/pgb.* >>"$RESULTS"
      echo "pgbench $op clients=$clients: $tps tps" >&2
    done
  done
  rm -f "$WORK"/pgb.*
  psql -q "$DB_URL" -c "DROP TABLE bench_raw_values" -c CHECKPOINT >/dev/null

  serve_and_measure postgres "$DB_URL"

  # A checkpoint first, so that neither measurement pays for the previous
  # phase's dirty pages.
  psql -q "$DB_URL" -c CHECKPOINT >/dev/null
  log "postgres: $POPULATION persons, 64 concurrent"
  load postgres population set-attribute 64 --tag persons=small
  load postgres population get-attributes 64 --tag persons=small
  if [[ "$MILLION" == 1 ]]; then
    log "postgres: seeding persons up to $BIG_POPULATION by SQL"
    started=$SECONDS
    psql -q "$DB_URL" -v ON_ERROR_STOP=1 -v prefix=u -v from="$POPULATION" \
      -v to="$BIG_POPULATION" -f bench/pgbench/seed_persons.sql >/dev/null
    printf '{"tags":{"suite":"seed","system":"postgres"},"persons":%s,"seconds":%s}\n' \
      "$((BIG_POPULATION - POPULATION))" "$((SECONDS - started))" >>"$RESULTS"
    psql -q "$DB_URL" -c CHECKPOINT >/dev/null
    log "postgres: $BIG_POPULATION persons, 64 concurrent"
    POPULATION=$BIG_POPULATION load postgres population set-attribute 64 --tag persons=large
    POPULATION=$BIG_POPULATION load postgres population get-attributes 64 --tag persons=large
  fi
  if [[ "$PURGE" == 1 ]]; then
    if [[ "$MILLION" == 1 ]]; then
      POPULATION=$BIG_POPULATION purge_step "${BENCH_PURGE_PERSONS:-$BIG_POPULATION}"
    else
      purge_step "${BENCH_PURGE_PERSONS:-$POPULATION}"
    fi
  fi
  stop_server
  if [[ "$MILLION" == 1 ]]; then
    # The raw database over as many persons, to tell what the database
    # itself loses with size from what the service adds.
    log "postgres: raw baselines over $BIG_POPULATION persons"
    psql -q "$DB_URL" -v ON_ERROR_STOP=1 -v pop="$BIG_POPULATION" -f bench/pgbench/setup.sql >/dev/null
    psql -q "$DB_URL" -c CHECKPOINT >/dev/null
    for op in upsert1 select10; do
      rm -f "$WORK"/pgb.*
      checkpoint
      pgbench -n -M prepared -T "$SECS" -c 64 -j 2 -D pop="$BIG_POPULATION" \
        -f "bench/pgbench/$op.sql" -l --log-prefix "$WORK/pgb" "$DB_URL" >"$WORK/pgbench.out" 2>&1 || {
        cat "$WORK/pgbench.out" >&2
        die "pgbench failed"
      }
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out" | head -n 1)
      "$BIN/vevee-bench" pgbench-log --op "$op" --concurrency 64 --tps "$tps" \
        --duration "${SECS}s" --population "$BIG_POPULATION" \
        --tag system=postgres --tag suite=raw-population --tag persons=large "$WORK"/pgb.* >>"$RESULTS"
      echo "pgbench $op clients=64 over $BIG_POPULATION persons: $tps tps" >&2
    done
    rm -f "$WORK"/pgb.*
  fi
fi

# --- report ------------------------------------------------------------------

pg_setting() { psql -Atq "$PG_URL/postgres" -c "SHOW $1" 2>/dev/null || echo "?"; }
{
  echo "## Results of $(date -u +'%Y-%m-%d %H:%M UTC')"
  echo
  echo "- Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory, $(uname -sr)"
  echo "- Load average before the run: $LOADAVG (other work on the machine shares the cores)"
  echo "- PostgreSQL $(pg_setting server_version): synchronous_commit=$(pg_setting synchronous_commit), shared_buffers=$(pg_setting shared_buffers), max_connections=$(pg_setting max_connections), fsync=$(pg_setting fsync)"
  echo "- SQLite $(sed -n 's/.*"sqlite_version":"\([^"]*\)".*/\1/p' "$RESULTS" | head -n 1) (bundled by sqlx): WAL, synchronous=FULL"
  echo "- Commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + local changes'); $(rustc --version)"
  echo "- Command: \`bench/run.sh\` (each run ${WARMUP} s warm-up + ${SECS} s measured; load generator: $CONNECTIONS HTTP/2 connections, $THREADS threads; $POPULATION persons, uniform ids unless noted)"
  echo "- Server: \`vevee-attributes serve\` with default flags${SERVER_ARGS:+ plus \`$SERVER_ARGS\`} and \`$PK_RATES\` (10 database connections)"
  echo "- Took ${SECONDS} s. Columns: \"× raw\" is the figure over the raw baseline at the same concurrency, \"× Health\" over Health/Check of the same server at the same concurrency, \"load\" the 1-minute load average at the end of the run (the run itself accounts for about 2-3; more means other work shared the cores)"
  echo
  "$BIN/vevee-bench" report "$RESULTS"
  [[ -f "$OUT/purge.md" ]] && { echo; cat "$OUT/purge.md"; }
} >"$OUT/report.md"
cat "$OUT/report.md"
log "done: $OUT/report.md"
