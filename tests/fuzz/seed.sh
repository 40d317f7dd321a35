#!/usr/bin/env bash
# Seeds the fuzz corpora (DIR/TARGET/) from the fixtures: small real layers (plain, gzip, zstd,
# with whiteouts, links and an opaque directory), the busybox fixture's manifest and config, the
# tail of a built file (trailer, record), keys, references and loader arguments. Idempotent.
# usage: seed.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=$1
mkdir -p "$out"/{trailer_record,tar_layer,compressed_layer,reference,manifest,keys_and_signatures,loader_args,sbom_databases}
layout=$top/target/e2e-fixtures/busybox-v3
[ -f "$layout/index.json" ] || bash "$top/tests/fixtures/busybox.sh" "$layout" >&2
python3 - "$out" <<'PY'
import io, os, sys, tarfile, gzip
out = sys.argv[1]
def tar(entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, arg in entries:
            i = tarfile.TarInfo(name)
            if kind == "dir":
                i.type = tarfile.DIRTYPE; i.mode = 0o755
                t.addfile(i)
            elif kind == "file":
                i.size = len(arg); i.mode = 0o644
                t.addfile(i, io.BytesIO(arg))
            elif kind == "sym":
                i.type = tarfile.SYMTYPE; i.linkname = arg
                t.addfile(i)
            elif kind == "hard":
                i.type = tarfile.LNKTYPE; i.linkname = arg
                t.addfile(i)
    return b.getvalue()
layers = {
    "simple": tar([("etc", "dir", None), ("etc/hostname", "file", b"fuzz\n"), ("bin", "dir", None),
                   ("bin/sh", "file", b"#!" + b"x" * 100), ("bin/ash", "hard", "bin/sh"), ("lib", "sym", "usr/lib")]),
    "whiteouts": tar([("etc", "dir", None), ("etc/.wh.hostname", "file", b""), ("var", "dir", None),
                      ("var/.wh..wh..opq", "file", b""), ("var/kept", "file", b"k")]),
    "escapes": tar([("a", "sym", "/etc"), ("a/passwd", "file", b"x"), ("../up", "file", b"x"),
                    ("b", "hard", "../../etc/passwd")]),
}
status = (b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\n"
          b"Version: 2.36-9+deb12u4\nMaintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>\n"
          b"Description: GNU C Library\n shared libraries\n .\n more\n\n")
copyright = (b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
             b"Files: *\nCopyright: 1999 me\nLicense: GPL-2+ or (BSD-3-clause and Expat)\n\n"
             b"License: GPL-2+\n text\n .\n more\n")
apk = (b"C:Q1abc=\nP:musl\nV:1.2.4-r4\nA:x86_64\nL:MIT AND (BSD-2-Clause OR GPL-2.0-or-later)\n"
       b"o:musl\nm:N C <n@a.org>\nF:lib\nR:ld.so\n\n")
layers["sbom"] = tar([("var/lib/dpkg/status", "file", status), ("var/lib/dpkg/status.d/x", "file", status),
                      ("var/lib/dpkg/status.d/.wh.y", "file", b""), ("usr/share/doc/libc6/copyright", "file", copyright),
                      ("usr/share/doc/libc-bin", "sym", "libc6"), ("lib/apk/db/installed", "file", apk),
                      ("etc/os-release", "sym", "../usr/lib/os-release"),
                      ("usr/lib/os-release", "file", b"ID=debian\nVERSION_ID=12\n")])
for name, data in [("status", status), ("copyright", copyright), ("apk", apk),
                   ("rpm", b"bash\t0\t5.2\t3.fc40\tx86_64\tbash-5.2-3.src.rpm\tGPL-3.0-or-later\tFedora\n"),
                   ("layer", layers["sbom"]), ("layer.gz", gzip.compress(layers["sbom"], mtime=0))]:
    open(os.path.join(out, "sbom_databases", name), "wb").write(data)
for name, data in layers.items():
    open(os.path.join(out, "tar_layer", name), "wb").write(data)
    open(os.path.join(out, "compressed_layer", name + ".gz"), "wb").write(gzip.compress(data, mtime=0))
refs = ["alpine:3.19", "busybox", "docker.io/library/busybox:1.36", "localhost:5000/a/b:c",
        "ghcr.io/o/app@sha256:" + "ab" * 32, "[::1]:5000/x:y", "sha256:" + "cd" * 32]
for i, r in enumerate(refs):
    open(os.path.join(out, "reference", f"r{i}"), "w").write(r)
args = [["-e", "A=1", "--rm", "sh", "-c", "echo"], ["--verify-key", "k.pub", "true"],
        ["-v", "/tmp:/mnt:ro", "--read-only", "--net", "none", "--", "ls"],
        ["--userns=auto", "--memory", "64m", "--ulimit", "nofile=10:20", "-d", "--name", "x"]]
for i, a in enumerate(args):
    open(os.path.join(out, "loader_args", f"a{i}"), "wb").write(b"\0".join(x.encode() for x in a))
PY
if command -v zstd >/dev/null; then
  for f in "$out"/tar_layer/*; do zstd -q -f -o "$out/compressed_layer/$(basename "$f").zst" "$f"; done
fi
# The fixture's index, manifest and config.
cp "$layout/index.json" "$out/manifest/index.json"
for b in "$layout"/blobs/sha256/*; do
  [ "$(stat -c %s "$b")" -lt 65536 ] && head -c1 "$b" | grep -q '{' && cp "$b" "$out/manifest/$(basename "$b")"
done
# A small built file's tail: trailer, runtime record, metadata.
oci2bin=${OCI2BIN:-$top/target/release/oci2bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -x "$oci2bin" ]; then
  "$oci2bin" -q "oci:$layout:latest" "$tmp/bb" >/dev/null
  tail -c 65536 "$tmp/bb" >"$out/trailer_record/tail"
  "$oci2bin" keygen "$tmp/k" 2>/dev/null
  "$oci2bin" sign --key "$tmp/k.key" --in "$tmp/bb" 2>/dev/null
  tail -c 65536 "$tmp/bb" >"$out/trailer_record/signed-tail"
  cp "$tmp/k.key" "$out/keys_and_signatures/pkcs8.pem"
  cp "$tmp/k.pub" "$out/keys_and_signatures/pub.pem"
fi
if command -v openssl >/dev/null; then
  openssl ecparam -name prime256v1 -genkey -out "$out/keys_and_signatures/sec1.pem" 2>/dev/null
fi
