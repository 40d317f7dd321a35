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


warm = med("warm")
if warm:
    for peer, label in [("bwrap", "bwrap"), ("podman", "podman run"), ("docker", "docker run")]:
        m = med(peer)
        if m:
            print(f"  warm start vs {label:11s}: {warm / m:6.2f}x the time ({m / warm:6.1f}x {'faster' if m > warm else 'slower'})")
