#!/usr/bin/env python3
"""Prints `file_size overhead`: the bytes an oci2bin file adds to its image archive (loader entry,
metadata, runtime record, trailer) — file size minus the tar entries that `docker save` would hold."""
import os, struct, sys

f = sys.argv[1]
size = os.path.getsize(f)
with open(f, "rb") as fh:
    head = fh.read(512)
    fh.seek(size - 128)
    trailer = fh.read(128)
assert trailer[:8] == b"OCI2BIN\0", "no trailer"
tar_off, tar_len = struct.unpack_from("<QQ", trailer, 16)
entry = int(head[124:136].rstrip(b"\0 ") or b"0", 8)
head_len = 512 + (entry + 511) // 512 * 512
archive = tar_len - head_len
print(size, size - archive)
