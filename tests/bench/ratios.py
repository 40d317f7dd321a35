#!/usr/bin/env python3
"""Prints warm-start ratios against the peers measured in the same run."""
import json, os, sys

work, img = sys.argv[1:3]


def med(name):
    p = os.path.join(work, f"{img}-{name}.json")
    try:
        return json.load(open(p))["results"][0]["median"]
    except Exception:
        return None


# Like for like: one uid against the single-uid peers, the mapped range against podman and docker
# (which map ranges too).
rows = [("single", "bwrap", "bwrap"), ("single", "unshare", "unshare -r"), ("single", "chrun", "ch-run"),
        ("warm", "podman", "podman run"), ("warm", "docker", "docker run")]
for ours, peer, label in rows:
    o, m = med(ours), med(peer)
    if o and m:
        mode = "one uid " if ours == "single" else "subuid  "
        how = f"{m / o:6.1f}x faster" if m > o else f"{o / m:6.2f}x slower"
        print(f"  warm start ({mode}) vs {label:11s}: {o / m:6.2f}x the time ({how})")
