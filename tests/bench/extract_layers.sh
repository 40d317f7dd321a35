#!/usr/bin/env bash
# The cold-start peer: prints a sh script that extracts every layer of an OCI layout's image in
# order with GNU tar into the directory given as its $1 (no whiteout handling, so slightly less
# work than ours). Written ahead, so the timed run is sh and tar alone.
set -euo pipefail
layout=$1
m=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"].split(":")[1])' "$layout")
echo 'set -e'
python3 -c 'import json,sys; [print(l["mediaType"], l["digest"].split(":")[1]) for l in json.load(open(sys.argv[1]))["layers"]]' "$layout/blobs/sha256/$m" |
while read -r mt d; do
  case $mt in
    *zstd) echo "tar --zstd -xf $layout/blobs/sha256/$d -C \"\$1\"" ;;
    *gzip) echo "tar -xzf $layout/blobs/sha256/$d -C \"\$1\"" ;;
    *) echo "tar -xf $layout/blobs/sha256/$d -C \"\$1\"" ;;
  esac
done
