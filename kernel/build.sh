#!/usr/bin/env bash
# `make kernel`: builds the microVM kernel (an ELF vmlinux) from Debian's linux-source package:
# `tinyconfig` plus kernel/microvm.config, nothing downloaded from anywhere else. Reproducible
# (fixed build user, host and timestamp), and cached by the hash of the source tarball's name
# and size, the config fragment and this script: a second run with the same inputs copies the
# cached vmlinux and builds nothing.
#
# usage: kernel/build.sh [OUT]       (OUT: where vmlinux goes, default target/kernel/vmlinux)
# env:   LINUX_SOURCE   the tarball (default: the newest /usr/src/linux-source-*.tar.xz)
#        KERNEL_CACHE   cache directory (default: ~/.cache/oci2bin-kernel)
#        JOBS           make -j (default: nproc)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=${1:-$top/target/kernel/vmlinux}
fragment=$here/microvm.config

src=${LINUX_SOURCE:-$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1 || true)}
if [ -z "$src" ] || [ ! -f "$src" ]; then
  echo "kernel: no linux-source tarball in /usr/src: install one (apt-get install linux-source-6.1)" >&2
  exit 2
fi
for tool in make gcc bc bison flex xz; do
  command -v "$tool" >/dev/null || {
    echo "kernel: $tool is missing: apt-get install build-essential bc bison flex xz-utils libelf-dev" >&2
    exit 2
  }
done

key=$( { basename "$src"; stat -c %s "$src"; cat "$fragment" "$0"; } | sha256sum | cut -c1-16)
cache=${KERNEL_CACHE:-$HOME/.cache/oci2bin-kernel}/$key
mkdir -p "$(dirname "$out")"
if [ -f "$cache/vmlinux" ]; then
  cp "$cache/vmlinux" "$out.tmp" && mv "$out.tmp" "$out"
  echo "kernel: $out ($(stat -c %s "$out") bytes, cached $key)"
  exit 0
fi

start=$(date +%s)
mkdir -p "$(dirname "$cache")"
work=$(mktemp -d "$(dirname "$cache")/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$src"
tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
extracted=$(date +%s)

# Reproducible: the same inputs give the same bytes.
export KBUILD_BUILD_TIMESTAMP="@${SOURCE_DATE_EPOCH:-0}" KBUILD_BUILD_USER=oci2bin \
  KBUILD_BUILD_HOST=oci2bin KBUILD_BUILD_VERSION=1 LC_ALL=C
jobs=${JOBS:-$(nproc)}
make -C "$tree" -s tinyconfig >/dev/null
"$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" "$tree/.config" "$fragment" >/dev/null
make -C "$tree" -s olddefconfig >/dev/null
# Every option the fragment asks for must have survived the dependency resolution.
missing=""
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=n) opt=${line%%=*}; grep -qx "# $opt is not set" "$tree/.config" || \
      ! grep -q "^$opt=" "$tree/.config" || missing="$missing $line" ;;
    CONFIG_*=*) grep -qx "$line" "$tree/.config" || missing="$missing $line" ;;
  esac
done <"$fragment"
if [ -n "$missing" ]; then
  echo "kernel: the config lost:$missing" >&2
  exit 1
fi
make -C "$tree" -s -j"$jobs" vmlinux
strip --strip-debug -o "$work/vmlinux" "$tree/vmlinux"
mkdir -p "$work/out"
mv "$work/vmlinux" "$work/out/vmlinux"
cp "$tree/.config" "$work/out/config"
rm -rf "$cache"
mv "$work/out" "$cache"
cp "$cache/vmlinux" "$out.tmp" && mv "$out.tmp" "$out"
end=$(date +%s)
echo "kernel: $out ($(stat -c %s "$out") bytes; extract $((extracted - start)) s, build $((end - extracted)) s on $jobs jobs; cache $key)"
