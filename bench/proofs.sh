#!/usr/bin/env bash
# The verifiable log at scale: building the tree for an existing record, and the latency of
# inclusion proofs, consistency proofs and a command's evidence.
#
#   bench/proofs.sh [--deliveries 1000000] [--requests 1000] [--port 18095]
#
# On a fresh database (PostgreSQL of DATABASE_URL, default postgres@127.0.0.1:5432) with the
# release build: migrates, loads --deliveries deliveries in SQL (one executed command each, as
# a record stored before the tree existed), times `ticket-audit migrate` building the tree
# (wall time and peak RSS), then serves and times --requests requests of each kind, over leaves
# below 100,000 and over the whole tree, one keep-alive connection. Prints p50/p99 in ms.
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000000
REQUESTS=1000
PORT=18095
while [ $# -gt 0 ]; do
    case "$1" in
        --deliveries) N=$2; shift ;;
        --requests) REQUESTS=$2; shift ;;
        --port) PORT=$2; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
ADMIN=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build --release --locked -p ticket-audit --bin ticket-audit >&2
BIN=$CARGO_TARGET_DIR/release/ticket-audit
db=ta_bench_proofs
url=${ADMIN%/*}/$db
psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true' EXIT
DATABASE_URL=$url "$BIN" migrate >&2
echo "date $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $N deliveries"
# A record as the service would have stored it before the tree: the leaf needs only the
# chained fields, which are consistent here (the chain hash itself is not checked by the tree).
SECONDS=0
psql "$url" -v ON_ERROR_STOP=1 -q <<SQL
INSERT INTO deliveries (seq, received_at, dedup_key, key_source, body, body_sha256, action, status_code, hash, recorded_at)
SELECT g, ts, 'msg_' || g, 'webhook-id', b, sha256(b), 'POST:Ticket/SendTicketMessage', 200, sha256(int8send(g)), ts
FROM generate_series(1, $N) g,
     LATERAL (SELECT timestamptz '2026-01-01' + g * interval '1 ms' AS ts,
                     convert_to('{"Action":"POST:Ticket/SendTicketMessage","Data":{"RequestBody":{"ticketName":"T-' || (g % 5000)
                                || '"},"ResponseBody":{"data":{"executedCmds":[{"command":"kubectl get pods -n ns' || g
                                || '","result":"ok"}]}},"StatusCode":200}}', 'UTF8') AS b) x;
INSERT INTO action_events (seq, received_at, action, status_code, success, kind, ticket_name)
SELECT seq, received_at, action, 200, true, 'conversation', 'T-' || (seq % 5000) FROM deliveries;
INSERT INTO tickets (name, first_seen_at, first_seen_seq, last_activity_at, command_count)
SELECT 'T-' || i, timestamptz '2026-01-01', CASE WHEN i = 0 THEN 5000 ELSE i END, timestamptz '2026-01-01', 0 FROM generate_series(0, 4999) i;
INSERT INTO commands (seq, position, ticket_name, command, result, executed, recorded_at)
SELECT seq, 1, 'T-' || (seq % 5000), 'kubectl get pods -n ns' || seq, 'ok', true, received_at FROM deliveries;
UPDATE ledger_head SET seq = $N, hash = (SELECT hash FROM deliveries WHERE seq = $N), at = (SELECT recorded_at FROM deliveries WHERE seq = $N);
ANALYZE;
SQL
# Classified for reports, as import leaves a record: otherwise the service's background
# classifier works through the whole record during the measurement.
psql "$url" -v ON_ERROR_STOP=1 -qc 'DO $$ BEGIN WHILE reporting.classify(50000) > 0 LOOP END LOOP; END $$'
psql "$url" -qc 'VACUUM ANALYZE' 
echo "loaded in ${SECONDS} s"
/usr/bin/time -f "tree built by migrate: %e s, peak RSS %M KB" env DATABASE_URL=$url "$BIN" migrate 2>&1 >/dev/null | grep -E "tree built|error" || true
env DATABASE_URL=$url LISTEN_ADDR=127.0.0.1:$PORT API_TOKENS=bench DATA_DIR="$CARGO_TARGET_DIR/bench/proofs-data" \
    "$BIN" serve >"$CARGO_TARGET_DIR/bench/proofs-serve.log" 2>&1 &
pid=$!
until curl -fs -H 'authorization: Bearer bench' "http://127.0.0.1:$PORT/api/v1/ledger/checkpoint" 2>/dev/null | sed -n 2p | grep -qx "$N"; do
    kill -0 "$pid"; sleep 0.2
done
python3 - "$PORT" "$N" "$REQUESTS" <<'PY'
import http.client, random, sys, time
port, n, requests = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
def timed(path):
    t = time.perf_counter()
    conn.request("GET", path, headers={"authorization": "Bearer bench"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, (path, r.status)
    return (time.perf_counter() - t) * 1000
rng = random.Random(1)
def pct(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))]
for label, hi in (("leaves < 100,000", min(n, 100_000)), (f"all {n:,} leaves", n)):
    for kind, path in (
        ("inclusion", lambda: f"/api/v1/ledger/proof/inclusion?seq={rng.randint(1, hi)}&tree_size={n}"),
        ("consistency", lambda: f"/api/v1/ledger/proof/consistency?first={rng.randint(1, hi)}&second={n}"),
        ("evidence", lambda: f"/api/v1/commands/{rng.randint(1, hi)}.1/evidence"),
    ):
        for _ in range(50): timed(path())
        xs = [timed(path()) for _ in range(requests)]
        print(f"{kind:<12} {label:<22} p50 {pct(xs, .5):6.2f} ms  p99 {pct(xs, .99):6.2f} ms")
PY
kill -TERM "$pid"; wait "$pid" || true; pid=""
