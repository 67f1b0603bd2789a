#!/usr/bin/env python3
"""What a ticket's first timeline page reads, on a store as it is (bench/scale.sh's, at 10^7):

    bench/timeline_pages.py --url postgres://postgres@127.0.0.1:5432/ta_scale_large [--tickets 200] [--seed 1]

EXPLAIN (ANALYZE, BUFFERS) of src/store/sql/timeline.sql (the checkout's, prepared, limit 51 as
the API asks) for --tickets tickets picked at random (seeded) among all of the store's, each once.
Prints the mean buffers a page touches (shared hits plus reads: what the plan visits, whatever is
cached), the mean read from outside shared_buffers, the rows taken from the heap (index scans'
rows and filtered rows, index-only scans' heap fetches), and the execution time's percentiles.
Run it before and after a migration for an A/B of the schema; buffers and heap rows do not
depend on the machine's load, the times do. Needs psql.
"""
import argparse
import json
import random
import subprocess
from pathlib import Path

TABLES = ("action_events", "messages", "commands")


def heap_rows(plan):
    n = 0
    relation = plan.get("Relation Name", "")
    if relation.startswith(TABLES):
        if plan["Node Type"] == "Index Only Scan":
            n += plan.get("Heap Fetches", 0)
        else:
            n += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * plan.get("Actual Loops", 0)
    return n + sum(heap_rows(child) for child in plan.get("Plans", []))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--tickets", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sql", default=str(Path(__file__).resolve().parent.parent / "src/store/sql/timeline.sql"))
    args = ap.parse_args()

    psql = ["psql", args.url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    names = subprocess.run(psql + ["-c", "SELECT name FROM tickets ORDER BY name"], capture_output=True, text=True,
                           check=True).stdout.split()
    picked = random.Random(args.seed).sample(names, min(args.tickets, len(names)))
    lines = [f"PREPARE timeline (text, bigint, int, bigint) AS {Path(args.sql).read_text()};"]
    for name in picked:
        quoted = name.replace("'", "''")
        lines.append(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE timeline ('{quoted}', 0, -1, 51);")
    out = subprocess.run(psql, input="\n".join(lines), capture_output=True, text=True, check=True).stdout

    decoder, rest, rows = json.JSONDecoder(), out, []
    while rest.strip():
        doc, end = decoder.raw_decode(rest.lstrip())
        rest = rest.lstrip()[end:]
        plan = doc[0]["Plan"]
        rows.append((plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], plan["Shared Read Blocks"],
                     heap_rows(plan), doc[0]["Execution Time"], plan["Actual Rows"]))
    n = len(rows)
    mean = lambda k: sum(r[k] for r in rows) / n
    times = sorted(r[3] for r in rows)
    pct = lambda p: times[min(n - 1, int(p * n))]
    print(f"{n} tickets (seed {args.seed}), first page: {mean(4):.1f} entries, {mean(0):.1f} buffers "
          f"({mean(1):.1f} read), {mean(2):.1f} heap rows; execution p50 {pct(0.5):.2f} ms, p90 {pct(0.9):.2f}, "
          f"p99 {pct(0.99):.2f}")


if __name__ == "__main__":
    main()
