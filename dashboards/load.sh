#!/bin/sh
# A producer of a steady mix of catalogue jobs, with a plain XADD per job
# (the wire format needs only id, name and payload), so it runs wherever
# redis-cli and awk do: compose.yaml's producer and dashboards/check.sh.
#
# Environment (all optional):
#   REDIS_HOST (127.0.0.1)  REDIS_PORT (6379)  PREFIX (millrace)
#   QUEUES     (default: space- or comma-separated)
#   PER_ROUND  (20 jobs per queue per round)   INTERVAL (1 second)
#   ROUNDS     (0 = forever)
#
# Per 100 jobs: 70 noop, 15 sleep (0.1-1.5 s), 10 flaky (30 % failures),
# 3 fail-then-succeed (third attempt), 2 permanent failures (dead-lettered).
set -eu

host=${REDIS_HOST:-127.0.0.1}
port=${REDIS_PORT:-6379}
prefix=${PREFIX:-millrace}
queues=$(echo "${QUEUES:-default}" | tr ',' ' ')
per_round=${PER_ROUND:-20}
interval=${INTERVAL:-1}
rounds=${ROUNDS:-0}

round=0
while [ "$rounds" -eq 0 ] || [ "$round" -lt "$rounds" ]; do
  round=$((round + 1))
  now_ms=$(date +%s%3N)
  for q in $queues; do
    awk -v n="$per_round" -v q="$q" -v prefix="$prefix" -v now="$now_ms" \
        -v seed="$now_ms$round" -v host="$(hostname)" '
      BEGIN {
        srand(substr(seed, length(seed) - 8));
        printf "SADD %s:queues %s\n", prefix, q;
        for (i = 0; i < n; i++) {
          r = rand() * 100;
          if (r < 70)      { name = "noop";  payload = "{}" }
          else if (r < 85) { name = "sleep"; payload = sprintf("{\\\"ms\\\":%d}", 100 + int(rand() * 1400)) }
          else if (r < 95) { name = "flaky"; payload = "{\\\"fail_percent\\\":30}" }
          else if (r < 98) { name = "fail";  payload = "{\\\"succeed_on\\\":3}" }
          else             { name = "fail";  payload = "{\\\"permanent\\\":true,\\\"message\\\":\\\"load.sh permanent failure\\\"}" }
          printf "XADD \"%s:{%s}:stream\" * id \"load-%s-%s-%d\" name %s payload \"%s\" enqueued_at %s\n", \
            prefix, q, host, now, i, name, payload, now;
        }
      }' | redis-cli -h "$host" -p "$port" >/dev/null
  done
  sleep "$interval"
done
