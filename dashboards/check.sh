#!/usr/bin/env bash
# Proves the dashboards and alert rules against the real thing:
#
#  1. promtool check rules + promtool test rules (alert unit tests);
#  2. static checks (dashboards/check.py static): every metric a dashboard,
#     an alert or the KEDA example queries is one the worker emits, every
#     metric is documented, compose.yaml parses and names files that exist;
#  3. a private redis-server and PostgreSQL, a real millrace-worker (with
#     its outbox relay) under load from dashboards/load.sh (successes,
#     sleeps, retries, dead letters) and plain-SQL outbox inserts, and a
#     real Prometheus scraping it every second with alerts.yml loaded, all
#     on 127.0.0.1 in a temp dir; then every PromQL expression of every
#     dashboard panel, of the KEDA trigger and of every alert rule runs
#     through Prometheus's HTTP API (dashboards/check.py live).
#
# Installs Debian's prometheus package (prometheus + promtool) and
# postgresql when missing.
# Takes about 30 s once the worker is built. Usage: dashboards/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "--- installing prometheus (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "--- installing redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pg_bindir" ] || [ ! -x "$pg_bindir/initdb" ]; then
  echo "--- installing postgresql (for the outbox relay's metrics)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install --quiet pyyaml
fi

echo "--- promtool check rules / test rules"
promtool check rules dashboards/prometheus/alerts.yml
(cd dashboards/prometheus && promtool test rules alerts.test.yml)
promtool check config --syntax-only dashboards/prometheus/prometheus.yml >/dev/null \
  || { echo "dashboards/prometheus/prometheus.yml is invalid"; exit 1; }

echo "--- static checks"
python3 dashboards/check.py static

echo "--- building millrace-worker"
# Where cargo put it (CARGO_TARGET_DIR, a config's target-dir or ./target):
# the path of the executable cargo reports for the build.
worker_bin=$(cargo build --quiet -p millrace-worker --bin millrace-worker --message-format=json \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "millrace-worker":
        print(m["executable"])')
[ -x "$worker_bin" ] || { echo "cannot find the millrace-worker binary cargo built"; exit 1; }

tmp=$(mktemp -d /tmp/millrace-check.XXXXXX)
pids=()
cleanup() {
  echo "--- stopping (${SECONDS}s so far)"
  # Newest first: the worker stops (and hands back its jobs) while its
  # Redis still runs.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if [ -n "${pgdir:-}" ]; then
    "${as_pg[@]}" "$pg_bindir/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pgdir"
  fi
  rm -rf "$tmp"
  echo "--- done in ${SECONDS}s"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local start=$SECONDS deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "timed out after ${limit}s waiting for $what"
      for log in "$tmp"/*.log; do echo "--- $log"; tail -20 "$log"; done
      exit 1
    fi
    sleep 0.2
  done
  echo "  $what: $((SECONDS - start))s"
}

redis_port=$(free_port)
metrics_port=$(free_port)
prom_port=$(free_port)
pg_port=$(free_port)

echo "--- redis-server :$redis_port, worker :$metrics_port, prometheus :$prom_port ($tmp)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
wait_for "redis-server" 10 redis-cli -p "$redis_port" ping

# A private PostgreSQL for the outbox relay the worker runs (as the
# postgres user when we are root: PostgreSQL refuses to run as root).
pgdir=$(mktemp -d /tmp/millrace-check-pg.XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$pgdir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$pg_bindir/initdb" -D "$pgdir/data" -U postgres -A trust --no-sync --no-instructions >/dev/null
"${as_pg[@]}" "$pg_bindir/pg_ctl" -D "$pgdir/data" -w -l "$pgdir/log" \
  -o "-p $pg_port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
database_url="postgres://postgres@127.0.0.1:$pg_port/postgres"
echo "--- postgres :$pg_port ($pgdir)"

# billing is partitioned in two, so the per-partition panels have series.
redis-cli -p "$redis_port" SET 'millrace:{billing}:partitions' 2 >/dev/null

RUST_LOG=warn "$worker_bin" --redis-url "redis://127.0.0.1:$redis_port" \
  --queues default,billing --concurrency 4 --block 500ms --lease 3s \
  --sample-every 1s --metrics-addr 127.0.0.1 --metrics-port "$metrics_port" \
  --database-url "$database_url" --database-migrate --relay-poll 200ms \
  >"$tmp/worker.log" 2>&1 &
pids+=($!)
wait_for "the worker's /readyz" 20 curl -fsS "http://127.0.0.1:$metrics_port/readyz"

# Load throughout the check: 30 jobs per queue (and per partition of
# billing) per 0.5 s, a bit more than 4 slots per queue can run, so
# backlog and oldest-job age are non-zero.
REDIS_PORT=$redis_port QUEUES=default,billing,billing#0,billing#1 PER_ROUND=30 INTERVAL=0.5 \
  sh dashboards/load.sh >"$tmp/load.log" 2>&1 &
pids+=($!)

# Outbox load: plain-SQL inserts (any language can), relayed by the worker.
(
  while true; do
    "$pg_bindir/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c \
      "INSERT INTO millrace_outbox (queue, name, payload) SELECT 'default', 'noop', '{}' FROM generate_series(1, 5)" \
      >/dev/null 2>&1
    sleep 0.5
  done
) &
pids+=($!)

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/dashboards/prometheus/alerts.yml
scrape_configs:
  - job_name: millrace-worker
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
wait_for "prometheus" 30 curl -fsS "$prom/-/ready"

# Rates over 30 s windows need a few scrapes with jobs finishing, retries
# need their backoff, dead letters need five attempts: wait for them.
has_series() {
  curl -fsS "$prom/api/v1/query" --data-urlencode "query=$1" | grep -q '"result":\[{'
}
wait_for "scraped dead letters" 60 \
  has_series 'increase(millrace_jobs_finished_total{outcome="dead"}[1m]) > 0'
wait_for "scraped job durations" 60 \
  has_series 'rate(millrace_job_duration_seconds_count[30s]) > 0'
wait_for "a scraped backlog" 60 has_series 'millrace_queue_backlog > 0'
wait_for "scraped partitions" 60 \
  has_series 'rate(millrace_jobs_finished_total{partition!=""}[30s]) > 0'
wait_for "scraped outbox relays" 60 \
  has_series 'rate(millrace_outbox_relay_lag_seconds_count[30s]) > 0'
wait_for "a 10 s history" 30 has_series 'count_over_time(up{job="millrace-worker"}[30s]) >= 10'

echo "--- every dashboard and alert query"
python3 dashboards/check.py live "$prom"
