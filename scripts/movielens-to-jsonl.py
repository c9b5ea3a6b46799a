#!/usr/bin/env python3
"""Turns a MovieLens ratings file (u.data: user, item, rating, unix time; tab-separated) into the
training log and holdout set of `video-ranking-service evaluate`.

Usage: movielens-to-jsonl.py u.data OUT_DIR [--holdout-share 0.2]

A temporal split: the latest 20 % of ratings (by time) are the holdout period. Each training
rating becomes a `view`, a `watch` with completion rating/5, and a `like` when the rating is 4 or
5; each holdout rating of 4 or 5 by a user of the training period is an item to find.
"""
import json
import pathlib
import sys


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    share = float(args[args.index("--holdout-share") + 1]) if "--holdout-share" in args else 0.2
    rows = []
    for line in pathlib.Path(args[0]).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            user, item, rating, ts = parts[:4]
            rows.append((int(ts), user, item, float(rating)))
    rows.sort()
    cut = rows[int(len(rows) * (1 - share))][0]
    out = pathlib.Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    users = set()
    with open(out / "train.jsonl", "w") as train:
        for ts, user, item, rating in rows:
            if ts >= cut:
                continue
            users.add(user)
            base = {"user": user, "item": item, "ts": ts}
            train.write(json.dumps({**base, "type": "view"}) + "\n")
            train.write(json.dumps({**base, "type": "watch", "completion": rating / 5}) + "\n")
            if rating >= 4:
                train.write(json.dumps({**base, "type": "like"}) + "\n")
    with open(out / "holdout.jsonl", "w") as holdout:
        for ts, user, item, rating in rows:
            if ts >= cut and rating >= 4 and user in users:
                holdout.write(json.dumps({"user": user, "item": item}) + "\n")


if __name__ == "__main__":
    main()
