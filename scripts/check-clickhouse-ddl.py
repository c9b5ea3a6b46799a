#!/usr/bin/env python3
"""Checks the ClickHouse schema and the adapter's queries against a modern engine.

The test server is Debian's ClickHouse 18.16; production runs a modern one. This applies
clickhouse/init-db.sql and clickhouse/init-db-modern.sql (twice: they must be idempotent) in chdb,
an in-process ClickHouse (26.x), inserts a few events through the materialized views, and runs every
query text the adapter sends (from `cargo run --example print-queries`), checking their results.

Usage: check-clickhouse-ddl.py QUERIES_FILE   (needs the `chdb` package)
"""

import csv
import io
import pathlib
import sys
import time

DATABASE = "nova_check"
PLACEHOLDER = "${CLICKHOUSE_DATABASE}"
ROOT = pathlib.Path(__file__).resolve().parent.parent
NIL = "00000000-0000-0000-0000-000000000000"


def statements(text, database=DATABASE):
    """As the adapter splits them: whole-line comments dropped, split at `;`."""
    kept = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("--"))
    return [s.strip() for s in kept.replace(PLACEHOLDER, database).split(";") if s.strip()]


def named_queries(text):
    """`-- name` then the statement, as print-queries writes them."""
    queries, name, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("-- "):
            name, lines = line[3:].strip(), []
        elif line.rstrip().endswith(";") and name:
            lines.append(line.rstrip()[:-1])
            queries.append((name, "\n".join(lines)))
            name = None
        elif name:
            lines.append(line)
    return queries


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    started = time.monotonic()
    from chdb import session

    s = session.Session()

    def run(sql, what):
        try:
            return s.query(sql, "CSV")
        except Exception as e:  # chdb raises its own error type
            sys.exit(f"FAILED: {what}:\n{sql}\n{e}")

    def rows(sql, what):
        return list(csv.reader(io.StringIO(str(run(sql, what)))))

    version = rows("SELECT version()", "version")[0][0]
    base = statements((ROOT / "clickhouse/init-db.sql").read_text())
    modern = statements((ROOT / "clickhouse/init-db-modern.sql").read_text())
    for attempt in ("first", "second"):
        for i, sql in enumerate(base + modern):
            run(sql, f"{attempt} run, statement {i + 1}")

    ttl = rows(f"SELECT name FROM system.tables WHERE database = '{DATABASE}' "
               "AND create_table_query LIKE '%TTL%'", "TTL check")
    indexes = rows(f"SELECT name FROM system.data_skipping_indices WHERE database = '{DATABASE}'",
                   "index check")
    if len(ttl) != 5 or len(indexes) != 3:
        sys.exit(f"FAILED: expected 5 tables with TTL and 3 skip indexes, got {ttl} and {indexes}")

    # Two insert blocks through the views: the nil id is what the sample queries look up.
    insert = (f"INSERT INTO {DATABASE}.engagement_events "
              "(event_id, user_id, video_id, creator_id, event_type, watch_ms, completion, occurred_at) VALUES ")
    video, creator = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    block = lambda *events: insert + ", ".join(
        f"('{eid}', '{NIL}', '{video}', '{creator}', '{t}', NULL, {c}, now() - INTERVAL 10 MINUTE)"
        for eid, t, c in events)
    run(block((NIL, "view", "NULL"), ("33333333-3333-3333-3333-333333333333", "like", "NULL")), "insert 1")
    run(block(("44444444-4444-4444-4444-444444444444", "complete", "0.75")), "insert 2")
    # A quick skip (a completion sample of 0) and a "not interested" (a hidden video).
    run(insert + f"('55555555-5555-5555-5555-555555555555', '{NIL}', '{video}', '{creator}', 'skip', 1500, "
        "NULL, now() - INTERVAL 10 MINUTE), "
        f"('66666666-6666-6666-6666-666666666666', '{NIL}', '{video}', '{creator}', 'not_interested', NULL, "
        "NULL, now() - INTERVAL 10 MINUTE)", "insert 3")

    # An exposure (of the nil experiment, to the nil user, of the video) before those events.
    run(f"INSERT INTO {DATABASE}.experiment_exposures (exposure_id, experiment_id, variant, user_id, "
        f"session_id, video_id, position, served_at) VALUES ('{NIL}', '{NIL}', 'control', '{NIL}', "
        f"'{NIL}', '{video}', 0, now() - INTERVAL 20 MINUTE)", "insert exposure")

    def totals(got):
        # variant, users, sessions, exposures, Σn², then (Σs, Σs², Σs·n) of like, share,
        # complete, skip, watch_ms: one user with one exposure that was liked, completed and
        # skipped after 1.5 s.
        want = ["control", 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1500, 2250000, 1500]
        return len(got) == 1 and got[0][0] == want[0] and all(
            float(g) == w for g, w in zip(got[0][1:], want[1:])) and len(got[0]) == len(want)

    expected = {  # name -> the rows each sample query must return
        "known_exposure_ids": [[NIL]],
        "experiment_totals": totals,
        "known_event_ids": [[NIL]],
        "running_inserts": [["0"]],  # no raw-event insert runs while it is asked
        "running_insert_ids": [],
        "queries_still_running": [["0"]],
        "video_stats": [[video, "0", "1", "2", "0.75", "1", "0", "0", "0", "1"]],
        "trending": [[video]],
        "affinity": [[creator, "2"]],
        "hidden": [["video", video]],
        # view 0.5 + like 3 + complete 2 + skip -0.5 + not interested -3; the time is the inserts'.
        "engagement_pairs": lambda got: [r[:4] for r in got] == [[NIL, video, creator, "2"]],
        "watched_since": [[video]],
        "most_active_users": [[NIL, "5"]],
        "health": [["1"]],
    }
    queries = named_queries(pathlib.Path(sys.argv[1]).read_text())
    if sorted(n for n, _ in queries) != sorted(expected):
        sys.exit(f"FAILED: expected queries {sorted(expected)}, got {[n for n, _ in queries]}")
    for name, sql in queries:
        got = rows(sql, name)
        want = expected[name]
        if (not want(got)) if callable(want) else got != want:
            sys.exit(f"FAILED: {name} returned {got}, expected {expected[name]}:\n{sql}")
    s.close()
    print(f"ClickHouse {version} (chdb): {len(base)} + {len(modern)} schema statements (applied twice), "
          f"{len(queries)} adapter queries checked in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
