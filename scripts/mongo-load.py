#!/usr/bin/env python3
"""A load on a MongoDB-protocol server shaped like pushservice's, to compare local engines.

    .cache/experiments/venv/bin/python scripts/mongo-load.py --url mongodb://127.0.0.1:27018 \
        seed --subscribers 200000
    ... load --duration 60 [--senders 2] [--form eq|in]
    ... ab --rounds 5            # unsubscribe forms against each other, same run
    ... crash --pid-file F --restart-cmd '...'   # kill -9 during writes, restart, verify

Needs `pymongo` (pip install pymongo in a venv; nothing else). Prints one JSON report per phase.

seed   a site with N web subscribers (documents shaped like the product's), the audience index,
       one push document.
load   two "senders": each loops sending one `update` command of 500 unsubscribe statements
       (`--form eq`: one `{_id: X}` statement per id, `ordered: false`; `--form in`: one
       statement `{_id: {$in: [...]}, subscribed: true}` with multi) and upserting a small counter
       document every second; one "parser": streams `find({siteId, subscribed: true})
       .sort({_id: 1}).batchSize(1000)` over the audience, updating the push document every
       1,000 subscribers, then starts again. Counts errors by message, statement throughput,
       latencies, and the audience stream's time.
ab     the two unsubscribe forms on the same data, alternately, 500 ids a batch, no other load.
crash  writes (senders + parser) while the server is killed with SIGKILL after --kill-after
       seconds; restarts it with --restart-cmd; then checks every acknowledged unsubscribe is
       there, the subscriber count is whole, and the counters are readable.
"""

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import bson
import pymongo
from pymongo.errors import PyMongoError

DB = "loadtest"


def client(url, **kw):
    return pymongo.MongoClient(url, serverSelectionTimeoutMS=30000, socketTimeoutMS=120000, **kw)


def seed(args):
    c = client(args.url)
    c.drop_database(DB)
    db = c[DB]
    site = bson.ObjectId()
    other = bson.ObjectId()
    t0 = time.time()
    batch = []
    n = 0
    now = bson.datetime.datetime.now(bson.datetime.timezone.utc)
    for i in range(args.subscribers):
        # 1 in 20 belongs to another site, 1 in 50 is already unsubscribed: like a real audience.
        sid = other if i % 20 == 19 else site
        endpoint = json.dumps({
            "endpoint": f"https://fcm.googleapis.com/fcm/send/{os.urandom(12).hex()}:{os.urandom(40).hex()}",
            "expirationTime": None,
            "keys": {"p256dh": os.urandom(65).hex()[:87], "auth": os.urandom(16).hex()[:22]},
        })
        batch.append({"_id": bson.ObjectId(), "siteId": sid, "subscribed": i % 50 != 7,
                      "pushEndPoint": endpoint, "platform": "web", "createdAt": now, "updatedAt": now, "__v": 0})
        if len(batch) == 1000:
            db.subscribers.insert_many(batch, ordered=False)
            n += len(batch)
            batch = []
    if batch:
        db.subscribers.insert_many(batch, ordered=False)
        n += len(batch)
    seed_s = time.time() - t0
    db.subscribers.create_index([("siteId", 1), ("subscribed", 1), ("_id", 1)], name="siteId_1_subscribed_1__id_1")
    db.pushes.insert_one({"_id": bson.ObjectId(), "siteId": site, "status": "processing", "title": "load",
                          "totalSent": 0, "createdAt": now, "updatedAt": now})
    db.meta.replace_one({"_id": "load"}, {"_id": "load", "site": site}, upsert=True)
    report("seed", subscribers=n, seconds=round(seed_s, 1), per_second=round(n / seed_s))


def report(phase, **kw):
    print(json.dumps({"phase": phase, **kw}), flush=True)


def load_ids(db, site):
    return [d["_id"] for d in db.subscribers.find({"siteId": site}, {"_id": 1}).sort("_id", 1).batch_size(10000)]


def unsubscribe_cmd(ids, form):
    now = bson.datetime.datetime.now(bson.datetime.timezone.utc)
    if form == "eq":
        return {"update": "subscribers",
                "updates": [{"q": {"_id": i}, "u": {"$set": {"subscribed": False, "updatedAt": now}}} for i in ids],
                "ordered": False}
    return {"update": "subscribers",
            "updates": [{"q": {"_id": {"$in": ids}, "subscribed": True},
                         "u": {"$set": {"subscribed": False, "updatedAt": now}}, "multi": True}],
            "ordered": True}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.errors = collections.Counter()
        self.ops = collections.Counter()
        self.latency = collections.defaultdict(list)
        self.acked = []  # unsubscribed ids whose command was acknowledged
        self.streams = []

    def err(self, what, e):
        msg = str(e).split(", full error")[0][:160]
        with self.lock:
            self.errors[f"{what}: {msg}"] += 1

    def lat(self, what, seconds):
        with self.lock:
            self.ops[what] += 1
            self.latency[what].append(seconds)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))], 3)


def sender(url, ids, stop, stats, k, form, batch):
    db = client(url)[DB]
    push = db.pushes.find_one()["_id"]
    last_flush = time.time()
    rnd = random.Random(k)
    while not stop.is_set():
        chunk = rnd.sample(ids, batch)
        t = time.time()
        try:
            r = db.command(unsubscribe_cmd(chunk, form))
            if r.get("writeErrors"):
                stats.err("unsubscribe writeErrors", r["writeErrors"][0].get("errmsg"))
            else:
                stats.lat("unsubscribe", time.time() - t)
                with stats.lock:
                    stats.acked.extend(chunk)
        except PyMongoError as e:
            stats.err("unsubscribe", e)
            time.sleep(0.05)
        if time.time() - last_flush >= 1:
            last_flush = time.time()
            t = time.time()
            try:
                db.deliveryStats.update_one({"_id": f"{push}-sender-{k}"},
                                            {"$inc": {"accepted": 1000, "unsubscribed": batch}, "$set": {"pushId": push}},
                                            upsert=True)
                stats.lat("counter", time.time() - t)
            except PyMongoError as e:
                stats.err("counter", e)


def parser(url, site, stop, stats, once=False):
    db = client(url)[DB]
    push = db.pushes.find_one()["_id"]
    while not stop.is_set():
        t = time.time()
        n = 0
        try:
            cur = db.subscribers.find({"siteId": site, "subscribed": True}, {"_id": 1, "pushEndPoint": 1}) \
                .sort("_id", 1).batch_size(1000)
            for d in cur:
                n += 1
                if n % 1000 == 0:
                    tt = time.time()
                    db.pushes.update_one({"_id": push}, {"$set": {"checkpoint": d["_id"], "totalSent": n}})
                    stats.lat("checkpoint", time.time() - tt)
                if stop.is_set() and not once:
                    break
            else:
                with stats.lock:
                    stats.streams.append({"subscribers": n, "seconds": round(time.time() - t, 2)})
        except PyMongoError as e:
            stats.err("parser", e)
            time.sleep(0.2)
        if once:
            return


def run_load(url, seconds, senders, form, batch, stats):
    db = client(url)[DB]
    site = db.meta.find_one({"_id": "load"})["site"]
    ids = load_ids(db, site)
    stop = threading.Event()
    threads = [threading.Thread(target=sender, args=(url, ids, stop, stats, k, form, batch)) for k in range(senders)]
    threads.append(threading.Thread(target=parser, args=(url, site, stop, stats)))
    t0 = time.time()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=180)
    return time.time() - t0


def summary(stats, elapsed, batch):
    lat = {k: {"n": len(v), "p50": pct(v, .5), "p99": pct(v, .99), "max": pct(v, 1.0)} for k, v in stats.latency.items()}
    return dict(seconds=round(elapsed, 1),
                unsubscribe_statements_per_s=round(stats.ops["unsubscribe"] * batch / elapsed),
                latency_s=lat, audience_streams=stats.streams,
                errors=dict(stats.errors.most_common(10)), error_total=sum(stats.errors.values()))


def load(args):
    stats = Stats()
    elapsed = run_load(args.url, args.duration, args.senders, args.form, args.batch, stats)
    report("load", form=args.form, senders=args.senders, **summary(stats, elapsed, args.batch))


def ab(args):
    db = client(args.url)[DB]
    site = db.meta.find_one({"_id": "load"})["site"]
    ids = load_ids(db, site)
    rnd = random.Random(1)
    times = {"eq": [], "in": []}
    modified = {"eq": 0, "in": 0}
    for r in range(args.rounds):
        for form in ("eq", "in") if r % 2 == 0 else ("in", "eq"):
            chunk = rnd.sample(ids, args.batch)
            t = time.time()
            res = db.command(unsubscribe_cmd(chunk, form))
            times[form].append(time.time() - t)
            modified[form] += res.get("nModified", 0)
    out = {f: {"batches": len(v), "median_s": pct(v, .5), "min_s": round(min(v), 3), "max_s": round(max(v), 3),
               "statements_per_s": round(args.batch / pct(v, .5)), "modified": modified[f]} for f, v in times.items()}
    report("ab", subscribers=db.subscribers.estimated_document_count(), batch=args.batch,
           ratio_in_over_eq=round(out["in"]["median_s"] / out["eq"]["median_s"], 1), **out)


def crash(args):
    stats = Stats()
    pid = int(open(args.pid_file).read().strip())
    killer = threading.Timer(args.kill_after, lambda: os.kill(pid, signal.SIGKILL))
    killer.start()
    elapsed = run_load(args.url, args.kill_after + 3, args.senders, "eq", args.batch, stats)
    acked = set(stats.acked)
    t = time.time()
    rc = subprocess.call(args.restart_cmd, shell=True)
    restart_s = time.time() - t
    c = client(args.url)
    db = c[DB]
    total = db.subscribers.count_documents({})
    still = db.subscribers.count_documents({"_id": {"$in": list(acked)}, "subscribed": True}) if acked else 0
    counters = list(db.deliveryStats.find())
    # A full read of every document: a damaged page would fail here.
    scanned = sum(1 for _ in db.subscribers.find({}, {"_id": 1, "subscribed": 1}).batch_size(5000))
    # And the server still takes writes.
    db.crashcheck.insert_one({"ok": 1})
    report("crash", restart_rc=rc, restart_s=round(restart_s, 1), acked_unsubscribes=len(acked),
           acked_but_still_subscribed=still, subscribers_total=total, scanned=scanned,
           counter_docs=len(counters), errors_before_kill=dict(stats.errors.most_common(5)),
           load_s=round(elapsed, 1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="mongodb://127.0.0.1:27018")
    p.add_argument("--batch", type=int, default=500)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--subscribers", type=int, default=200000)
    s = sub.add_parser("load")
    s.add_argument("--duration", type=float, default=60)
    s.add_argument("--senders", type=int, default=2)
    s.add_argument("--form", choices=["eq", "in"], default="eq")
    s = sub.add_parser("ab")
    s.add_argument("--rounds", type=int, default=6)
    s = sub.add_parser("crash")
    s.add_argument("--pid-file", required=True)
    s.add_argument("--restart-cmd", required=True)
    s.add_argument("--kill-after", type=float, default=10)
    s.add_argument("--senders", type=int, default=2)
    args = p.parse_args()
    {"seed": seed, "load": load, "ab": ab, "crash": crash}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
