#!/usr/bin/env bash
# The benchmark of ticket-audit, in one command (see bench/README.md).
#
#   bench/run.sh            ingest: batched (WRITE_BATCH_MAX=256) vs one transaction per delivery (1)
#   bench/run.sh reads      read paths on a store of ~100,000 commands, then ~1,000,000
#   bench/run.sh all        both
#
# It builds the release binaries, creates fresh databases on the PostgreSQL of DATABASE_URL
# (default: the local server, postgres@127.0.0.1:5432), runs `ticket-audit serve` against them,
# drives it with bench/loadgen (ticket-audit-bench), and prints tables. Databases it creates are
# named ta_bench_* and dropped when it ends (--keep keeps them). Sizes are flags:
#
#   --concurrency "8 64 256"   ingest senders per run             --duration 10    seconds per ingest run
#   --batches "256 1"          WRITE_BATCH_MAX settings compared   --ingest-lines 100000  lines generated to send
#   --small 100000             commands in the first read store    --large 1000000  commands in the second
#   --tickets 20000            tickets (ingest data, large store)   --iterations 1000 timed requests per read
#   --small-tickets N          tickets in the small store (default: as many commands per ticket as the large)
#   --deep-pages 200           pages walked before a deep page (50 for one agent's)  --port 18080  service port
#   --out DIR                  where data, logs and results go (default target/bench)
#   --keep                     keep the databases
#   --large-db NAME            reads: use this existing database as the large store instead of
#                              importing one (bench/scale.sh builds one at 10^7); never dropped
#   --db-prefix P              name the databases P_* (default ta_bench)
#   --baseline BIN             ingest: also run another build of ticket-audit (e.g. main's, from a
#                              git worktree) in the same run, interleaved, and print the ratio
#   --rounds 1                 ingest: run every (build, senders) this many times; the builds take
#                              turns going first, and the ratio is of the rounds' sums
#   --service BIN              ingest: this build instead of building the checkout's
#   --collate C                create the databases with this LC_COLLATE (the private cluster uses C;
#                              a server whose default is C.UTF-8 or en_US compares text by locale)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PART=ingest
CONCURRENCY="8 64 256"
BATCHES="256 1"
DURATION=10
ROUNDS=1
INGEST_LINES=100000
SMALL=100000
LARGE=1000000
TICKETS=20000
ITERATIONS=1000
DEEP_PAGES=200
PORT=18080
OUT=""
KEEP=0
BASELINE=""
COLLATE=""
SERVICE_BIN=""
LARGE_DB=""
DB_PREFIX=ta_bench
while [ $# -gt 0 ]; do
    case "$1" in
        ingest | reads | all) PART=$1 ;;
        --concurrency) CONCURRENCY=$2; shift ;;
        --batches) BATCHES=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --ingest-lines) INGEST_LINES=$2; shift ;;
        --small) SMALL=$2; shift ;;
        --large) LARGE=$2; shift ;;
        --tickets) TICKETS=$2; shift ;;
        --small-tickets) SMALL_TICKETS=$2; shift ;;
        --iterations) ITERATIONS=$2; shift ;;
        --deep-pages) DEEP_PAGES=$2; shift ;;
        --port) PORT=$2; shift ;;
        --out) OUT=$2; shift ;;
        --keep) KEEP=1 ;;
        --baseline) BASELINE=$(realpath "$2"); shift ;;
        --collate) COLLATE=$2; shift ;;
        --service) SERVICE_BIN=$(realpath "$2"); shift ;;
        --large-db) LARGE_DB=$2; shift ;;
        --db-prefix) DB_PREFIX=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$CARGO_TARGET_DIR/bench}
mkdir -p "$OUT"
SERVICE=${SERVICE_BIN:-$CARGO_TARGET_DIR/release/ticket-audit}
LOADGEN=$CARGO_TARGET_DIR/release/ticket-audit-bench
SECRET="whsec_$(printf 'ticket-audit benchmark secret!!!' | base64)"
TOKEN=bench-read-token
RESULTS=$OUT/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl

say() { printf '\n== %s\n' "$*" >&2; }

# ------------------------------------------------------------------ database server
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
case "$ADMIN_URL" in *sslmode=*) ;; *\?*) ADMIN_URL="$ADMIN_URL&sslmode=disable" ;; *) ADMIN_URL="$ADMIN_URL?sslmode=disable" ;; esac
SERVER_URL=${ADMIN_URL%%\?*}
case "${SERVER_URL#*//}" in */*) SERVER_URL=${SERVER_URL%/*} ;; esac
URL_QUERY=${ADMIN_URL#*\?}
db_url() { echo "$SERVER_URL/$1?$URL_QUERY"; }
command -v psql >/dev/null || { echo "psql is needed (apt-get install postgresql-client)" >&2; exit 1; }
if ! psql "$ADMIN_URL" -Atqc 'select 1' >/dev/null 2>&1; then
    if [ -z "${DATABASE_URL:-}" ] && command -v pg_ctlcluster >/dev/null && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
        sleep 2
    fi
    psql "$ADMIN_URL" -Atqc 'select 1' >/dev/null || { echo "cannot reach PostgreSQL at $SERVER_URL" >&2; exit 1; }
fi
psql_q() { psql "$(db_url "$1")" -v ON_ERROR_STOP=1 -Atqc "$2"; }
# Where the server preloads pg_stat_statements, each ingest run also reports its statements'
# time (the batch statement, the lookup, the head's swap, the classifier): see run_ingest.
PGSS=0
case "$(psql_q postgres 'show shared_preload_libraries')" in *pg_stat_statements*) PGSS=1 ;; esac
CREATED=()
# Drops database $1 if it is there (without the server's NOTICE when it is not).
drop_db() { PGOPTIONS="-c client_min_messages=warning" psql_q postgres "DROP DATABASE IF EXISTS $1 WITH (FORCE)"; }
fresh_db() {
    drop_db "$1"
    if [ -n "$COLLATE" ]; then
        psql_q postgres "CREATE DATABASE $1 TEMPLATE template0 LC_COLLATE '$COLLATE'"
    else
        psql_q postgres "CREATE DATABASE $1"
    fi
    CREATED+=("$1")
}

# ------------------------------------------------------------------ the service
SERVICE_PID=""
RSS_PID=""
stop_service() {
    if [ -n "$SERVICE_PID" ]; then
        kill -TERM "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
        SERVICE_PID=""
    fi
}
cleanup() {
    [ -n "$RSS_PID" ] && kill "$RSS_PID" 2>/dev/null || true
    stop_service
    if [ "$KEEP" = 0 ]; then
        for db in "${CREATED[@]}"; do drop_db "$db" || true; done
    fi
}
trap cleanup EXIT

# start_service DB LOG [ENV=VALUE...]   (the binary: $BIN, else $SERVICE)
start_service() {
    local db=$1 log=$2
    shift 2
    env DATABASE_URL="$(db_url "$db")" LISTEN_ADDR="127.0.0.1:$PORT" WEBHOOK_SECRET="$SECRET" \
        API_TOKENS="$TOKEN" "$@" "${BIN:-$SERVICE}" serve >"$log" 2>&1 &
    SERVICE_PID=$!
    PEAK_KB=0
    for _ in $(seq 1 300); do
        if curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$log" >&2; echo "the service did not start" >&2; exit 1; }
        sleep 0.1
    done
    echo "the service did not become ready; see $log" >&2
    exit 1
}

# CPU time (clock ticks) used so far by the given processes; gone processes count 0.
cpu_ticks() {
    local total=0 pid t
    for pid in "$@"; do
        t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}
# The PostgreSQL processes working for database $1: its backends, and the WAL writer,
# checkpointer and background writer every commit goes through.
pg_pids() {
    psql_q postgres "select pid from pg_stat_activity where datname = '$1' and pid <> pg_backend_pid()
                     or backend_type in ('walwriter', 'checkpointer', 'background writer')" | tr '\n' ' '
}
load_average() { cut -d' ' -f1-3 /proc/loadavg; }
# The whole machine's CPU time so far, in clock ticks, "BUSY STEAL IDLE" (/proc/stat, every
# core): busy is user, nice, system, irq and softirq (anyone's, the kernel's networking too),
# steal is time the hypervisor gave the virtual cores to someone else, idle counts iowait.
# Over a run, their shares tell whether the cores were ours, busy, or waiting for the writer.
machine_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9, $5 + $6 }' /proc/stat
}
# A sample of the service's /metrics, by its full name; "null" where the build does not export it.
# Used for ticket_audit_writer_busy_seconds_sum (seconds the writer has spent with a batch being
# written or committed) and ticket_audit_write_batch_size_count (batches written: counted by the
# writer, so unlike transaction ids it leaves out the classifier's steps and anything else the
# server runs).
service_metric() {
    curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" 2>/dev/null |
        awk -v name="$1" '$1 == name { print $2; f = 1 } END { if (!f) print "null" }'
}

# The writer thread's time so far, in ns, "ON_CPU WAITING": on a core, and runnable but waiting
# for one (/proc/.../schedstat, fields 1 and 2); "null" where the kernel does not keep it. The
# second is what the two shared cores cost the serial writer: every step of a batch's chain waits
# its turn behind the request handlers and PostgreSQL's backends.
writer_sched() {
    local t
    for t in /proc/"$SERVICE_PID"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = ticket-audit-wr ] && [ -r "$t/schedstat" ]; then
            cut -d' ' -f1,2 "$t/schedstat"
            return
        fi
    done
    echo null
}

kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SERVICE_PID/status"; }

# Highest RSS of the service while a command runs, in kB, into $1. The kernel keeps the peak
# (VmHWM); writing 5 to clear_refs resets it, so the run's peak is VmHWM at its end, with no
# polling beside the benchmark. Where that is not allowed, VmRSS is polled every 50 ms.
watch_rss() {
    RSS_FILE=$1
    echo 0 >"$RSS_FILE"
    PEAK_KB=$(process_peak)
    if echo 5 2>/dev/null >"/proc/$SERVICE_PID/clear_refs"; then
        RSS_PID=""
        return
    fi
    (
        max=0
        while kill -0 "$SERVICE_PID" 2>/dev/null; do
            rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$SERVICE_PID/status" 2>/dev/null || echo 0)
            if [ "${rss:-0}" -gt "$max" ]; then max=$rss; echo "$max" >"$RSS_FILE"; fi
            sleep 0.05
        done
    ) &
    RSS_PID=$!
}
# The service's peak RSS since it started, in kB (VmHWM, and what resets of it took away).
PEAK_KB=0
process_peak() {
    local hwm
    hwm=$(kb VmHWM)
    echo $(( ${hwm:-0} > PEAK_KB ? ${hwm:-0} : PEAK_KB ))
}
unwatch_rss() {
    if [ -z "$RSS_PID" ]; then
        kb VmHWM >"$RSS_FILE"
        return
    fi
    kill "$RSS_PID" 2>/dev/null || true
    wait "$RSS_PID" 2>/dev/null || true
    RSS_PID=""
}

# ------------------------------------------------------------------ build
say "building release binaries (ticket-audit, ticket-audit-bench)"
# Two invocations: built together, cargo would unify their features (hyper's client into the
# service), giving a service binary that differs from the one `cargo build --release` makes.
[ -n "$SERVICE_BIN" ] || cargo build --release --locked -p ticket-audit --bin ticket-audit >&2
cargo build --release --locked -p ticket-audit-bench >&2

machine() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo)"
    echo "postgres: $(psql_q postgres 'select version()' | cut -d' ' -f1-2); fsync=$(psql_q postgres 'show fsync'), synchronous_commit=$(psql_q postgres 'show synchronous_commit'), shared_buffers=$(psql_q postgres 'show shared_buffers')"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
}

# ------------------------------------------------------------------ ingest
run_ingest() {
    local data=$OUT/ingest-$INGEST_LINES-$TICKETS.ndjson
    if [ ! -s "$data" ]; then
        say "generating $INGEST_LINES deliveries over $TICKETS tickets (seeded) into $data"
        python3 bench/gen_deliveries.py --deliveries "$INGEST_LINES" --tickets "$TICKETS" --seed 7 --no-times >"$data.tmp"
        mv "$data.tmp" "$data"
    fi
    local rows=$OUT/ingest-rows.jsonl
    : >"$rows"
    local variants="this:$SERVICE"
    [ -n "$BASELINE" ] && variants="$variants baseline:$BASELINE"
    # Every run has a fresh database of its own, dropped once the run is done (unless --keep), and
    # starts just after a checkpoint. Run one after another on one database, or with the last
    # build's database left behind, the second build ran while the first one's writes were
    # being checkpointed and vacuumed, and lost up to a quarter to that (2026-12-02,
    # bench/README.md). The builds take turns going first.
    for batch in $BATCHES; do
      for round in $(seq 1 "$ROUNDS"); do
      local step=0
      for c in $CONCURRENCY; do
        # At each sender count, the other build goes first in the next round.
        local order=$variants
        [ $(((round + step) % 2)) = 0 ] && order=$(echo "$variants" | tr ' ' '\n' | tac | tr '\n' ' ')
        step=$((step + 1))
        for variant in $order; do
            local name=${variant%%:*}
            BIN=${variant#*:}
            local db=${DB_PREFIX}_ingest_b${batch}_$name
            say "WRITE_BATCH_MAX=$batch, $c senders, round $round, $name build ($BIN): fresh database $db, service on :$PORT"
            fresh_db "$db"
            start_service "$db" "$OUT/service-ingest-b$batch-$name.log" WRITE_BATCH_MAX="$batch"
            # Warm-up (not reported): connections, prepared statements, the first pages.
            # Its new deliveries (202) count in the run's loss check.
            local warm_new
            warm_new=$("$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" \
                --concurrency 8 --count 2000 --id-prefix "warm-" --label warmup --json |
                python3 -c "import json,sys; print(json.load(sys.stdin)['statuses'].get('202', 0))")
            # Statistics and dead rows as autovacuum would keep them (this server may run without
            # it, as CI's does): a prepared statement planned on an empty table keeps scanning it
            # whole until its table is analyzed.
            psql_q "$db" "VACUUM ANALYZE"
            # Needs superuser or pg_checkpoint; without either, runs start wherever the last
            # checkpoint left them.
            psql_q postgres "CHECKPOINT" >/dev/null 2>&1 || true
            local load pids svc0 pg0 svc1 pg1
            load=$(load_average)
            pids=$(pg_pids "$db")
            svc0=$(cpu_ticks "$SERVICE_PID")
            pg0=$(cpu_ticks $pids)
            local busy0 busy1
            busy0=$(service_metric ticket_audit_writer_busy_seconds_sum)
            local batches0 batches1
            batches0=$(service_metric ticket_audit_write_batch_size_count)
            local sched0 sched1
            sched0=$(writer_sched)
            # Transaction ids are taken by every transaction on the server: their count is the
            # number of batches only where nothing else runs. The fallback for builds that do not
            # count their batches (ticket_audit_write_batch_size).
            local xid0 xid1
            if [ "$PGSS" = 1 ] && ! psql_q "$db" "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()" >/dev/null; then
                echo "pg_stat_statements: cannot create or reset it as this user; statements not reported" >&2
                PGSS=0
            fi
            xid0=$(psql_q postgres "select txid_current()")
            local mach0 mach1
            mach0=$(machine_ticks)
            watch_rss "$OUT/rss"
            local line
            line=$("$LOADGEN" ingest --url "http://127.0.0.1:$PORT" --file "$data" --secret "$SECRET" \
                --concurrency "$c" --duration "$DURATION" --id-prefix "b${batch}c${c}$name-" \
                --label "batch=$batch" --json)
            mach1=$(machine_ticks)
            unwatch_rss
            xid1=$(psql_q postgres "select txid_current()")
            # The run's five costliest statements on this database, by total execution time.
            echo null >"$OUT/statements.json"
            [ "$PGSS" = 1 ] && psql_q "$db" "select coalesce(json_agg(s), 'null') from (
                select calls, total_exec_time / 1000 as total_s, mean_exec_time as mean_ms,
                       left(regexp_replace(query, '\s+', ' ', 'g'), 48) as query
                from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())
                order by total_exec_time desc limit 5) s" >"$OUT/statements.json"
            svc1=$(cpu_ticks "$SERVICE_PID")
            pg1=$(cpu_ticks $pids)
            busy1=$(service_metric ticket_audit_writer_busy_seconds_sum)
            batches1=$(service_metric ticket_audit_write_batch_size_count)
            sched1=$(writer_sched)
            echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"$name batch {$batch:>3} c={r['concurrency']:<4} {r['deliveries_per_sec']:8.0f}/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  max {r['max_ms']:.1f} ms  {r['statuses']}\")" >&2
            local stored hot
            stored=$(psql_q "$db" "select count(*) from deliveries")
            # Share of ticket row updates that were HOT (no new index entries): see migrations/V8.
            hot=$(psql_q "$db" "select coalesce(round(100.0 * n_tup_hot_upd / nullif(n_tup_upd, 0)), 0) from pg_stat_user_tables where relname = 'tickets'")
            echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(build='$name', batch=$batch, stored=$stored, warm_new=$warm_new, hot_ticket_updates_pct=$hot, rss_kb=int(open('$OUT/rss').read()), hwm_kb=$(process_peak), load_before='$load', service_cpu_s=($svc1-$svc0)/$(getconf CLK_TCK), postgres_cpu_s=($pg1-$pg0)/$(getconf CLK_TCK), transactions=$xid1-$xid0-1, writer_busy_s=None if 'null' in ('$busy0', '$busy1') else $busy1-$busy0, batches=None if 'null' in ('$batches0', '$batches1') else $batches1-$batches0, statements=json.load(open('$OUT/statements.json')), writer_sched_s=None if 'null' in ('$sched0', '$sched1') else [(b - a) / 1e9 for a, b in zip(map(int, '$sched0'.split()), map(int, '$sched1'.split()))], machine_ticks=[b - a for a, b in zip(map(int, '$mach0'.split()), map(int, '$mach1'.split()))]); print(json.dumps(r))" >>"$rows"
            stop_service
            [ "$KEEP" = 1 ] || drop_db "$db"
        done
      done
      done
    done
    BIN=
    cat "$rows" >>"$RESULTS"
    machine
    echo "command: bench/run.sh ingest --concurrency \"$CONCURRENCY\" --batches \"$BATCHES\" --duration $DURATION --rounds $ROUNDS --tickets $TICKETS${BASELINE:+ --baseline $BASELINE}"
    python3 - "$rows" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
runs = [r for r in rows if "concurrency" in r]
builds = list(dict.fromkeys(r["build"] for r in runs))
print()
print("| build | WRITE_BATCH_MAX | senders | deliveries/s | p50 ms | p99 ms | max ms | non-2xx | peak RSS MB (run / process) "
      "| deliveries per batch | CPU µs per delivery: service / PostgreSQL / load generator | cores busy | writer busy | writer thread on a core / waiting for one | machine: busy / stolen / idle | load avg before |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---|")
def busy(r):
    # Share of the run's wall time with a batch being written or committed.
    b = r.get("writer_busy_s")
    return "-" if b is None else f"{100 * b / r['seconds']:.0f}%"
def sched(r):
    # Share of the run's wall time the writer's thread ran, and was runnable but waited for a core.
    s = r.get("writer_sched_s")
    return "-" if not s else " / ".join(f"{100 * x / r['seconds']:.0f}%" for x in s)
def per_batch(r):
    # Deliveries per batch of the writer; from transaction ids (every transaction on the server,
    # the classifier's too) where the build does not count its batches.
    b = r.get("batches")
    return f"{r['acknowledged'] / max(b, 1):.1f}" if b is not None else f"{r['acknowledged'] / max(r['transactions'], 1):.1f} (per transaction)"
def machine(r):
    # The whole machine over the run: busy (anyone's), stolen by the hypervisor, idle.
    m = r.get("machine_ticks")
    return "-" if not m or not sum(m) else " / ".join(f"{100 * x / sum(m):.0f}%" for x in m)
for r in runs:
    bad = sum(v for k, v in r["statuses"].items() if not k.startswith("2"))
    n = max(r["acknowledged"], 1)
    cpu = [r["service_cpu_s"], r["postgres_cpu_s"], r["cpu_s"]]
    per = " / ".join(f"{c / n * 1e6:.0f}" for c in cpu)
    print(f"| {r['build']} | {r['batch']} | {r['concurrency']} | {r['deliveries_per_sec']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
          f"{r['max_ms']:.1f} | {bad} | {r['rss_kb']/1024:.1f} / {r['hwm_kb']/1024:.1f} | "
          f"{per_batch(r)} | {per} | "
          f"{sum(cpu) / r['seconds']:.2f} | {busy(r)} | {sched(r)} | {machine(r)} | {r['load_before']} |")
# Where pg_stat_statements is loaded: each run's costliest statements, as shares of its wall time
# (the batch statement's share is the serial part of the pipeline; see docs/performance.md).
timed = [r for r in runs if r.get("statements")]
if timed:
    print()
    print("Statements by execution time (pg_stat_statements; share of the run's wall time, calls, mean):")
    for r in timed:
        parts = [f"{100 * t['total_s'] / r['seconds']:.0f}% {t['calls']}x {t['mean_ms']:.2f} ms `{t['query'].strip()}`"
                 for t in r["statements"]]
        print(f"- {r['build']} batch {r['batch']}, {r['concurrency']} senders: " + "; ".join(parts))
def rate(build, batch, c):
    # Summed over the rounds: the ratio of two sums, each build having gone first as often.
    m = [r for r in runs if r["build"] == build and r["batch"] == batch and r["concurrency"] == c]
    return sum(r["deliveries_per_sec"] for r in m) if m else None
batches = sorted({r["batch"] for r in runs}, reverse=True)
senders = sorted({r["concurrency"] for r in runs})
if len(batches) >= 2:
    hi, lo = batches[0], batches[-1]
    print()
    print(f"| build | senders | batched ({hi}) / one per transaction ({lo}) |")
    print("|---|---:|---:|")
    for b in builds:
        for c in senders:
            a, z = rate(b, hi, c), rate(b, lo, c)
            if a and z:
                print(f"| {b} | {c} | {a / z:.1f}x |")
if len(builds) >= 2:
    print()
    print(f"| WRITE_BATCH_MAX | senders | {builds[0]} / {builds[1]} |")
    print("|---:|---:|---:|")
    for batch in batches:
        for c in senders:
            a, z = rate(builds[0], batch, c), rate(builds[1], batch, c)
            if a and z:
                print(f"| {batch} | {c} | {a / z:.2f}x |")
print()
# The loss check: each run has a database of its own, so what it stored must be exactly what was
# acknowledged as new (202) in its warm-up and its run; fewer would be an acknowledged delivery lost.
lost = 0
for r in runs:
    acked = r["warm_new"] + r["statuses"].get("202", 0)
    verdict = "all stored" if r["stored"] == acked else f"MISMATCH: {acked} acknowledged as new"
    lost += r["stored"] != acked
    print(f"{r['build']} build, WRITE_BATCH_MAX={r['batch']}, {r['concurrency']} senders: service peak memory (VmHWM) {r['hwm_kb']/1024:.1f} MB; "
          f"{r['stored']} deliveries stored ({verdict}); {r['hot_ticket_updates_pct']}% of ticket updates HOT")
print("loss check: " + ("every delivery acknowledged as new is stored, and nothing else" if not lost else f"{lost} runs stored other than they acknowledged"))
sys.exit(1 if lost else 0)
EOF
}

# ------------------------------------------------------------------ reads
# load_store DB FILE: a fresh database holding FILE, imported through the real write path.
load_store() {
    local db=$1 file=$2 t0=$SECONDS
    fresh_db "$db"
    # The importer's statements are prepared once and keep the plan made on the table as it was:
    # on an empty, never analyzed table that is a sequential scan per batch (quadratic over a
    # large import when autovacuum is off, as on CI's server). Import a first slice, analyze,
    # and import the rest on new connections.
    head -n 5000 "$file" >"$OUT/part.ndjson"
    DATABASE_URL="$(db_url "$db")" "$SERVICE" import "$OUT/part.ndjson" >&2
    psql_q "$db" "VACUUM ANALYZE"
    tail -n +5001 "$file" >"$OUT/part.ndjson"
    DATABASE_URL="$(db_url "$db")" "$SERVICE" import "$OUT/part.ndjson" >&2
    rm -f "$OUT/part.ndjson"
    # Statistics and the visibility map, as autovacuum would leave them (it may be off here).
    psql_q "$db" "VACUUM ANALYZE"
    say "imported $(wc -l <"$file") lines into $db in $((SECONDS - t0)) s"
}

run_reads() {
    # The small store has as many commands per ticket as the large one (fewer tickets), so each
    # read returns as much at both sizes and only the size of the store differs.
    local small_tickets=${SMALL_TICKETS:-$((TICKETS * SMALL / LARGE))}
    local size commands tickets file db label rows=$OUT/reads-rows.jsonl
    : >"$rows"
    for size in small large; do
        if [ $size = small ]; then commands=$SMALL tickets=$small_tickets; else commands=$LARGE tickets=$TICKETS; fi
        file=$OUT/store-$commands-$tickets.ndjson
        db=${DB_PREFIX}_reads_$size
        label=$commands
        if [ $size = large ] && [ -n "$LARGE_DB" ]; then
            db=$LARGE_DB
            say "the large store: the existing database $db"
        elif [ ! -s "$file" ]; then
            say "generating a store of $commands commands over $tickets tickets (seeded; a minute per million)"
            python3 bench/gen_deliveries.py --commands "$commands" --tickets "$tickets" --seed 1 >"$file.tmp"
            mv "$file.tmp" "$file"
        fi
        if [ $size = small ] || [ -z "$LARGE_DB" ]; then load_store "$db" "$file"; fi
        local counts
        counts=$(psql_q "$db" "select (select count(*) from commands) || ' commands, ' || (select count(*) from tickets) || ' tickets, ' || (select count(*) from deliveries) || ' deliveries, ' || pg_size_pretty(pg_database_size(current_database()))")
        say "store: $counts"
        start_service "$db" "$OUT/service-reads-$size.log"
        watch_rss "$OUT/rss"
        # A first run warms the caches and the service's prepared statements; it is not kept.
        "$LOADGEN" reads --url "http://127.0.0.1:$PORT" --token "$TOKEN" --iterations "$ITERATIONS" \
            --deep-pages "$DEEP_PAGES" --label "$label" >&2
        local line load
        load=$(load_average)
        line=$("$LOADGEN" reads --url "http://127.0.0.1:$PORT" --token "$TOKEN" --iterations "$ITERATIONS" \
            --deep-pages "$DEEP_PAGES" --label "$label" --seed 2 --json)
        unwatch_rss
        echo "$line" | python3 -c "import json,sys; r=json.load(sys.stdin); r.update(size='$size', store='$counts', load_before='$load', rss_kb=int(open('$OUT/rss').read()), hwm_kb=$(process_peak)); print(json.dumps(r))" >>"$rows"
        stop_service
    done
    cat "$rows" >>"$RESULTS"
    machine
    echo "command: bench/run.sh reads --small $SMALL --large $LARGE --tickets $TICKETS --small-tickets $small_tickets --iterations $ITERATIONS --deep-pages $DEEP_PAGES${LARGE_DB:+ --large-db $LARGE_DB}"
    python3 - "$rows" <<'EOF'
import json, sys
rows = {r["size"]: r for r in map(json.loads, open(sys.argv[1]))}
s, l = rows["small"], rows["large"]
print()
print(f"small: {s['store']}")
print(f"large: {l['store']}")
print(f"(each read timed {s['iterations']} times, one request at a time, after an untimed run of the same;"
      f" load average before: {s['load_before']} / {l['load_before']})")
print()
print(f"| read | p50 ms @{s['label']} | p99 ms @{s['label']} | p50 ms @{l['label']} | p99 ms @{l['label']} | p50 ratio | p99 ratio |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, a in s["reads"].items():
    b = l["reads"][name]
    print(f"| {name} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} | "
          f"{b['p50_ms']/a['p50_ms']:.2f}x | {b['p99_ms']/a['p99_ms']:.2f}x |")
print()
print(f"service peak memory (VmHWM): {s['hwm_kb']/1024:.1f} MB at {s['label']}, {l['hwm_kb']/1024:.1f} MB at {l['label']}")
EOF
}

case "$PART" in
    ingest) run_ingest ;;
    reads) run_reads ;;
    all) run_ingest; run_reads ;;
esac
echo "raw results appended to $RESULTS" >&2
