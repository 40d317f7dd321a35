#!/usr/bin/env python3
"""Copies an OCI layout's image keeping only its first layer (a one-layer image: the Debian
fixture's 63 MB gzip base), blobs hard-linked.

usage: first_layer.py SRC DST
"""
import hashlib, json, os, subprocess, sys

src, dst = sys.argv[1:3]
os.makedirs(dst)
subprocess.run(["cp", "-al", os.path.join(src, "blobs"), dst], check=True)
blob = lambda d: os.path.join(dst, "blobs", *d.split(":", 1))


def put(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    if not os.path.exists(blob(d)):
        open(blob(d), "wb").write(data)
    return d, len(data)


index = json.load(open(os.path.join(src, "index.json")))
desc = index["manifests"][0]
manifest = json.load(open(blob(desc["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
config["rootfs"]["diff_ids"] = config["rootfs"]["diff_ids"][:1]
hist, seen = [], 0
for h in config.get("history", []):
    if not h.get("empty_layer"):
        seen += 1
        if seen > 1:
            break
    hist.append(h)
config["history"] = hist
manifest["layers"] = manifest["layers"][:1]
manifest["config"]["digest"], manifest["config"]["size"] = put(config)
desc["digest"], desc["size"] = put(manifest)
index["manifests"] = [desc]
json.dump(index, open(os.path.join(dst, "index.json"), "w"))
open(os.path.join(dst, "oci-layout"), "w").write(open(os.path.join(src, "oci-layout")).read())
