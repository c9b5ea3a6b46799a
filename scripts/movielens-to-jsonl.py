#!/usr/bin/env python3
"""Turns a MovieLens ratings file (u.data: user, item, rating, unix time; tab-separated) into the
training log and holdout set of `video-ranking-service evaluate`.

Usage: movielens-to-jsonl.py u.data OUT_DIR [--holdout-share 0.2] [--split global|per-user]

A temporal split. `global` (the default): the latest 20 % of all ratings (by time) are the holdout
period, so the holdout users are those still rating at the end. `per-user`: each user's latest
20 % of ratings are held out (every user with 5 ratings or more is measured). Each training rating
becomes a `view`, a `watch` with completion rating/5, and a `like` when the rating is 4 or 5; each
holdout rating of 4 or 5 by a user of the training period is an item to find.
"""
import argparse
import json
import pathlib
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ratings", type=pathlib.Path, help="u.data: user, item, rating, unix time")
    parser.add_argument("out", type=pathlib.Path, help="where train.jsonl and holdout.jsonl go")
    parser.add_argument("--holdout-share", type=float, default=0.2)
    parser.add_argument("--split", choices=["global", "per-user"], default="global")
    a = parser.parse_args()
    if not 0 < a.holdout_share < 1:
        sys.exit("--holdout-share must lie strictly between 0 and 1")
    rows = []
    for line in a.ratings.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            user, item, rating, ts = parts[:4]
            rows.append((int(ts), user, item, float(rating)))
    if len(rows) < 2:
        sys.exit(f"{a.ratings}: no tab- or space-separated ratings found")
    rows.sort()
    held = set()
    if a.split == "global":
        cut = rows[min(int(len(rows) * (1 - a.holdout_share)), len(rows) - 1)][0]
        held = {i for i, r in enumerate(rows) if r[0] >= cut}
    else:
        by_user = {}
        for i, r in enumerate(rows):
            by_user.setdefault(r[1], []).append(i)
        for indexes in by_user.values():
            if len(indexes) >= 5:
                n = max(1, int(len(indexes) * a.holdout_share + 0.999999))
                held.update(indexes[-n:])
    args = [str(a.ratings), str(a.out)]
    out = pathlib.Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    users = set()
    with open(out / "train.jsonl", "w") as train:
        for i, (ts, user, item, rating) in enumerate(rows):
            if i in held:
                continue
            users.add(user)
            base = {"user": user, "item": item, "ts": ts}
            train.write(json.dumps({**base, "type": "view"}) + "\n")
            train.write(json.dumps({**base, "type": "watch", "completion": rating / 5}) + "\n")
            if rating >= 4:
                train.write(json.dumps({**base, "type": "like"}) + "\n")
    with open(out / "holdout.jsonl", "w") as holdout:
        for i, (ts, user, item, rating) in enumerate(rows):
            if i in held and rating >= 4 and user in users:
                holdout.write(json.dumps({"user": user, "item": item}) + "\n")


if __name__ == "__main__":
    main()
