#!/usr/bin/env bash
# The cold-start peer: GNU tar extracting every layer of an OCI layout's image in order into DEST
# (no whiteout handling, so slightly less work than ours).
set -euo pipefail
layout=$1 dest=$2
mkdir -p "$dest"
m=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"].split(":")[1])' "$layout")
python3 -c 'import json,sys; [print(l["mediaType"], l["digest"].split(":")[1]) for l in json.load(open(sys.argv[1]))["layers"]]' "$layout/blobs/sha256/$m" |
while read -r mt d; do
  case $mt in
    *zstd) tar --zstd -xf "$layout/blobs/sha256/$d" -C "$dest" ;;
    *gzip) tar -xzf "$layout/blobs/sha256/$d" -C "$dest" ;;
    *) tar -xf "$layout/blobs/sha256/$d" -C "$dest" ;;
  esac
done
