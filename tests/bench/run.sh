#!/usr/bin/env bash
# `make bench`: loader size, polyglot overhead, cold and warm start of `FILE /bin/true` (and of
# `FILE --vm /bin/true`) for the
# busybox and the Debian fixtures, side by side with bwrap, ch-run and `unshare -r chroot` on the
# same extracted rootfs, `podman run --rm` (vfs) and `docker run --rm`, all in one run.
# Medians of repeated runs (hyperfine). Our file, bwrap, ch-run and unshare run as an unprivileged
# user (the test user when run as root); podman and docker run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
OCI2BIN=${OCI2BIN:-$top/target/release/oci2bin}
RUNS=${BENCH_RUNS:-20}
COLD_RUNS=${BENCH_COLD_RUNS:-5}
cache=${FIXTURE_CACHE:-$HOME/.cache/oci2bin-fixtures}
work=$(mktemp -d /tmp/o2b-bench.XXXXXX)
chmod 755 "$work"
cleanup() { chmod -R u+rwX "$work" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

as_user=()
if [ "$(id -u)" = 0 ]; then
  "$top/tests/setup-test-user.sh" >/dev/null
  u=${OCI2BIN_TEST_USER:-o2btest}
  as_user=(setpriv "--reuid=$u" "--regid=$u" --clear-groups --)
  user_env="env -i PATH=/usr/bin:/bin HOME=$work/home USER=$u XDG_CACHE_HOME=$work/home/.cache"
else
  user_env="env -i PATH=/usr/bin:/bin HOME=$work/home USER=$USER XDG_CACHE_HOME=$work/home/.cache"
fi
mkdir -p "$work/home"
[ "$(id -u)" != 0 ] || chown "${u}:" "$work/home"
run_user() { "${as_user[@]}" $user_env "$@"; }
userq=$(printf '%q ' "${as_user[@]}")

# json FILE -> median seconds
median() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$1"; }
ms() { python3 -c 'import sys; print(f"{float(sys.argv[1])*1000:8.1f} ms")' "$1"; }
hf() { # name runs prepare cmd
  local name=$1 runs=$2 prep=$3 cmd=$4
  if hyperfine -N --style none --runs "$runs" ${prep:+--prepare "$prep"} --export-json "$work/$name.json" "$cmd" >/dev/null 2>"$work/$name.err"; then
    ms "$(median "$work/$name.json")"
  else
    echo "  failed ($(tail -1 "$work/$name.err"))"
  fi
}

mkdir -p "$top/target/e2e-fixtures"
[ -f "$top/target/e2e-fixtures/busybox-v3/index.json" ] || bash "$top/tests/fixtures/busybox.sh" "$top/target/e2e-fixtures/busybox-v3"
[ -f "$cache/debian-layout-v3/index.json" ] || FIXTURE_CACHE=$cache bash "$top/tests/fixtures/debian.sh" "$cache/debian-layout-v3"

loader=${OCI2BIN_EMBED_LOADER:-$top/target/x86_64-unknown-linux-musl/loader/loader}
echo "== oci2bin benchmarks ($(date -u +%F), $(nproc) cores, kernel $(uname -r), ${RUNS} warm / ${COLD_RUNS} cold runs, medians)"
[ -n "$loader" ] && [ -f "$loader" ] && echo "loader size: $(stat -c %s "$loader") bytes ($(( $(stat -c %s "$loader") / 1024 )) KiB, static)"

docker_ok=0; docker info >/dev/null 2>&1 && docker_ok=1
owner=-; [ "$(id -u)" != 0 ] || owner=$u
# The layouts, copied where the unprivileged user can read them (GNU tar runs as that user), and
# the one-layer image: the Debian fixture's 63 MB gzip base alone.
cp -r "$top/target/e2e-fixtures/busybox-v3" "$work/busybox-layout"
cp -r "$cache/debian-layout-v3" "$work/debian-layout"
python3 "$here/first_layer.py" "$work/debian-layout" "$work/debian1-layout"
chmod -R a+rX "$work"/*-layout
layout_of() { echo "$work/$1-layout"; }
for img in busybox debian debian1; do
  f=$work/$img
  "$OCI2BIN" -q "oci:$(layout_of $img):latest" "$f" --tag "o2bbench/$img:latest" >/dev/null
  chmod 755 "$f"
done

# Cold starts first, before anything below deletes trees (see cold.py), each run into an empty
# cache (ours) or directory (tar), ours and GNU tar's in turn, all as the same unprivileged user:
# tar then restores no owners either, as ours with one uid; the subordinate range row also
# gives every file its image owner.
env0="env -i PATH=/usr/bin:/bin HOME=$work/home"
# Trees deleted in the last minute (five while their inode blocks are dirty) slow every file
# creation down on ext4 without a journal, as this VM's disk is (see cold.py): flush, and let
# what the build and earlier tests deleted age out first.
sync
sleep "${BENCH_SETTLE:-65}"
for img in busybox debian debian1; do
  f=$work/$img
  case $img in
    busybox) what="busybox (1 layer)" ;;
    debian) what="Debian (4 layers: 63 MB gzip, 2 small, 1 zstd)" ;;
    debian1) what="Debian's base alone (1 layer, 63 MB gzip)" ;;
  esac
  bash "$here/extract_layers.sh" "$(layout_of $img)" >"$work/$img-tar.sh"
  echo
  echo "-- cold start, $what: median of $COLD_RUNS runs each, in turn"
  python3 "$here/cold.py" "$work" "$COLD_RUNS" "$owner" \
    "$img-coldsingle|oci2bin cold start (--userns=single)|${userq}$env0 XDG_CACHE_HOME={dir} $f --userns=single /bin/true" \
    "$img-cold|oci2bin cold start (subuid range)|${userq}$env0 XDG_CACHE_HOME={dir} $f /bin/true" \
    "$img-tar|GNU tar -x of the same layers|${userq}$env0 sh $work/$img-tar.sh {dir}"
  python3 - "$work" "$img" <<'PY'
import json, os, sys
w, img = sys.argv[1:3]
def med(n):
    try:
        return json.load(open(os.path.join(w, f"{img}-{n}.json")))["results"][0]["median"]
    except Exception:
        return None
tar = med("tar")
for n, label in [("coldsingle", "one uid"), ("cold", "subuid ")]:
    o = med(n)
    if o and tar:
        print(f"  cold start ({label}) vs GNU tar   : {o / tar:6.2f}x the time (goal <= 0.5x)")
PY
done

echo
echo "-- layer store: ten images on the Debian base (the fixture, and nine with one small layer each), one uid"
python3 "$here/store.py" "$OCI2BIN" "$work/debian-layout" "$work" "$owner" "${as_user[@]}"

for img in busybox debian; do
  layout=$(layout_of $img)
  f=$work/$img
  read -r size overhead <<<"$(python3 "$here/overhead.py" "$f")"
  echo
  echo "-- $img: file $((size / 1024)) KiB, polyglot overhead $overhead bytes (file minus image archive)"
  run_user "$f" /bin/true
  stack=$(cat "$(ls -d "$work"/home/.cache/oci2bin/rootfs/*-s1 | head -1)/layers" 2>/dev/null | wc -l)
  echo "  (our root: an overlay of $stack stored layers; the peers' below: the merged tree)"
  # Warm start both ways: the default maps the user's /etc/subuid range through the setuid
  # newuidmap/newgidmap (as rootless podman does), and `--userns=single` maps one uid (the work
  # bwrap, ch-run and unshare do, so that row is the one to hold against them). Both run as
  # every run does by default: Docker's capability set and Docker's default seccomp filter
  # (compiled into the file), the writable layer on disk in the cache's run area; the third row
  # leaves the filter out to show its cost, the fourth keeps the writes in RAM (the old default).
  printf '  %-34s' "oci2bin warm (range; seccomp+caps)"; hf "$img-warm" "$RUNS" "" "${userq}$user_env $f /bin/true"
  run_user "$f" --userns=single /bin/true
  printf '  %-34s' "oci2bin warm (single; seccomp+caps)"; hf "$img-single" "$RUNS" "" "${userq}$user_env $f --userns=single /bin/true"
  printf '  %-34s' "oci2bin warm (single; --no-seccomp)"; hf "$img-noseccomp" "$RUNS" "" "${userq}$user_env $f --userns=single --no-seccomp /bin/true"
  printf '  %-34s' "oci2bin warm (single; --tmpfs-upper)"; hf "$img-tmpfsupper" "$RUNS" "" "${userq}$user_env $f --userns=single --tmpfs-upper /bin/true"
  # The peers get the merged tree (one directory, as they need), made by our merged mode.
  peers=$work/peers-$img
  mkdir -p "$peers"
  [ "$(id -u)" != 0 ] || chown "${u}:" "$peers"
  run_user env OCI2BIN_ROOTFS=merged XDG_CACHE_HOME="$peers" "$f" --userns=single /bin/true
  rootfs=$(ls -d "$peers"/oci2bin/rootfs/*-x2 | head -1)
  printf '  %-34s' "bwrap (extracted rootfs)"
  hf "$img-bwrap" "$RUNS" "" "${userq}$user_env bwrap --unshare-user --unshare-pid --unshare-uts --unshare-ipc --uid 0 --gid 0 --bind $rootfs / --proc /proc --dev /dev /bin/true"
  printf '  %-34s' "unshare -r chroot (extracted)"
  hf "$img-unshare" "$RUNS" "" "${userq}$user_env unshare -r -m -p -f -u -i /usr/sbin/chroot $rootfs /bin/true"
  if command -v ch-run >/dev/null; then
    printf '  %-34s' "ch-run (extracted rootfs)"
    hf "$img-chrun" "$RUNS" "" "${userq}$user_env ch-run $rootfs -- /bin/true"
  fi
  if command -v podman >/dev/null; then
    P="podman --root $work/podman/root --runroot $work/podman/run --storage-driver vfs --runtime runc --cgroup-manager cgroupfs --events-backend none"
    $P load -q -i "$f" >/dev/null 2>&1 || true
    printf '  %-34s' "podman run --rm (vfs)"
    hf "$img-podman" "$((RUNS / 4 + 1))" "" "$P run --rm --net none --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 o2bbench/$img:latest /bin/true"
  fi
  if [ $docker_ok = 1 ]; then
    printf '  %-34s' "docker run --rm"
    if docker load -q <"$f" >/dev/null 2>"$work/docker-load.err"; then
      hf "$img-docker" "$((RUNS / 4 + 1))" "" "docker run --rm --net none o2bbench/$img:latest /bin/true"
    else
      echo "  docker load failed: $(tail -1 "$work/docker-load.err") (engine $(docker version -f '{{.Server.Version}}'); zstd layers need a newer engine)"
    fi
    docker rmi -f "o2bbench/$img:latest" >/dev/null 2>&1 || true
  fi
  python3 "$here/ratios.py" "$work" "$img"
done

# Pull throughput (issue 13): the four-layer Debian fixture from a registry on loopback, ours vs
# `skopeo copy docker://… oci:…`, as the same (unprivileged) user. Cold = empty blob cache (ours)
# or empty destination (skopeo); warm = ours again with every blob cached.
echo
echo "-- pull: debian (4 layers) from docker-registry on 127.0.0.1"
if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then
  echo "  skipped: docker-registry or skopeo missing"
  exit 0
fi
reg=$work/registry
mkdir -p "$reg"
printf 'version: 0.1\nlog: {level: info, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/storage}}\nhttp: {addr: "127.0.0.1:0", secret: bench}\n' "$reg" >"$reg/config.yml"
docker-registry serve "$reg/config.yml" >"$reg/log" 2>&1 &
reg_pid=$!
trap 'kill $reg_pid 2>/dev/null; cleanup' EXIT
port=""
for _ in $(seq 100); do
  port=$(grep -o "listening on 127.0.0.1:[0-9]*" "$reg/log" | head -1 | cut -d: -f2 || true)
  [ -n "$port" ] && break
  sleep 0.05
done
src="docker://127.0.0.1:$port/o2bbench/debian:latest"
skopeo copy -q --dest-tls-verify=false "oci:$cache/debian-layout-v3:latest" "$src"
pull_home=$work/pull-home
mkdir -p "$pull_home"
[ "$(id -u)" != 0 ] || chown "${u}:" "$pull_home"
pull_env="env -i PATH=/usr/bin:/bin HOME=$pull_home XDG_CACHE_HOME=$pull_home/.cache"
if ! run_user env -i PATH=/usr/bin:/bin HOME="$pull_home" XDG_CACHE_HOME="$pull_home/.cache" \
  "$OCI2BIN" -q --tls-verify=false "$src" "$pull_home/out" >/dev/null 2>"$work/pull.err"; then
  echo "  oci2bin pull failed: $(tail -1 "$work/pull.err")"
  exit 0
fi
printf '  %-34s' "oci2bin pull, cold (no blob cache)"
hf pull-cold "$COLD_RUNS" "rm -rf $pull_home/.cache $pull_home/out" "${userq}$pull_env $OCI2BIN -q --tls-verify=false $src $pull_home/out"
printf '  %-34s' "skopeo copy docker:// oci:"
hf pull-skopeo "$COLD_RUNS" "rm -rf $pull_home/sk" "${userq}$pull_env skopeo copy -q --src-tls-verify=false $src oci:$pull_home/sk:latest"
printf '  %-34s' "oci2bin pull, warm (blobs cached)"
hf pull-warm "$RUNS" "rm -f $pull_home/out" "${userq}$pull_env $OCI2BIN -q --tls-verify=false $src $pull_home/out"
# The floor of any warm pull: writing the output's bytes at all (a plain copy of the file).
printf '  %-34s' "cp of the output (the floor)"
hf pull-floor "$RUNS" "rm -f $pull_home/copy" "${userq}cp --reflink=never $pull_home/out $pull_home/copy"
python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
def med(n):
    try:
        return json.load(open(os.path.join(w, f"{n}.json")))["results"][0]["median"]
    except Exception:
        return None
cold, sk, warm, floor = med("pull-cold"), med("pull-skopeo"), med("pull-warm"), med("pull-floor")
if cold and sk:
    print(f"  pull cold vs skopeo copy      : {cold / sk:6.2f}x the time (goal <= 0.8x)")
if cold and warm:
    print(f"  pull warm vs our cold         : {warm / cold:6.2f}x the time (goal <= 0.1x)")
if cold and floor:
    print(f"  cp of the output vs our cold  : {floor / cold:6.2f}x the time (no warm pull can beat it)")
PY

# VM mode (issue 17): `FILE --vm /bin/true` on the busybox image, cold (an empty cache: the layers
# extracted, the kernel and the VM runtime copied out of the file) and warm, beside the namespace
# mode's warm start of the same file and beside the floor, `qemu-system-x86_64 -M microvm`
# booting the same kernel to a static busybox init that powers off at once. All as the same
# unprivileged user, in emulation (TCG) unless BENCH_VM_ACCEL=kvm: this machine kind's KVM cannot
# run a guest (no nested virtualisation).
vmlinux=$top/target/kernel/vmlinux
runtime=${OCI2BIN_EMBED_VM_RUNTIME:-$top/target/x86_64-unknown-linux-musl/loader/loader-vm}
if [ -f "$vmlinux" ] && command -v qemu-system-x86_64 >/dev/null && [ -f "$runtime" ]; then
  accel=${BENCH_VM_ACCEL:-tcg}
  echo
  echo "-- VM mode (--vm, qemu microvm, accel $accel): VM runtime $(stat -c %s "$runtime") bytes, kernel $(stat -c %s "$vmlinux") bytes (vmlinux)"
  vmf=$work/busybox-vm
  "$OCI2BIN" -q --vm --vm-kernel "$vmlinux" "oci:$(layout_of busybox):latest" "$vmf"
  echo "  file $(( $(stat -c %s "$vmf") / 1024 )) KiB (busybox image + gzipped kernel + runtime)"
  vmhome=$work/vmhome
  mkdir -p "$vmhome"
  [ "$(id -u)" != 0 ] || chown "${u}:" "$vmhome"
  vm_env="env -i PATH=/usr/bin:/bin HOME=$vmhome XDG_CACHE_HOME=$vmhome/.cache"
  printf '  %-34s' "oci2bin --vm cold (empty cache)"
  hf vm-cold "$COLD_RUNS" "rm -rf $vmhome/.cache" "${userq}$vm_env $vmf --vm --vm-accel $accel /bin/true"
  run_user "$vmf" --vm --vm-accel "$accel" /bin/true
  printf '  %-34s' "oci2bin --vm warm"
  hf vm-warm "$((RUNS / 2))" "" "${userq}$vm_env $vmf --vm --vm-accel $accel /bin/true"
  run_user "$vmf" --userns=single /bin/true
  printf '  %-34s' "oci2bin warm (namespaces, same file)"
  hf vm-ns "$RUNS" "" "${userq}$user_env $vmf --userns=single /bin/true"
  floor=$work/vm-floor
  mkdir -p "$floor/root/bin"
  cp /bin/busybox "$floor/root/bin/busybox"
  printf '#!/bin/busybox sh\n/bin/busybox reboot -f\n' >"$floor/root/init"
  chmod 755 "$floor/root/init"
  (cd "$floor/root" && find . | cpio -o -H newc 2>/dev/null >"$floor/initrd.cpio")
  chmod -R a+rX "$floor"
  cpu=max; [ "$accel" = kvm ] && cpu=host
  printf '  %-34s' "qemu -M microvm, same kernel (floor)"
  hf vm-floor "$((RUNS / 2))" "" "${userq}qemu-system-x86_64 -M microvm,x-option-roms=off,acpi=off -accel $accel -cpu $cpu -m 512M -smp 1 -nodefaults -no-user-config -display none -no-reboot -kernel $vmlinux -initrd $floor/initrd.cpio -append 'console=ttyS0 quiet loglevel=1 panic=-1 reboot=t rdinit=/init' -serial null"
  python3 - "$work" <<'PY'
import json, os, sys
w = sys.argv[1]
def med(n):
    try:
        return json.load(open(os.path.join(w, f"{n}.json")))["results"][0]["median"]
    except Exception:
        return None
warm, floor, ns = med("vm-warm"), med("vm-floor"), med("vm-ns")
if warm and floor:
    print(f"  --vm warm minus the bare boot     : {(warm - floor) * 1000:8.1f} ms (ours: the tree, 9p, the init, the ports)")
if warm and ns:
    print(f"  --vm warm vs namespaces           : {warm / ns:8.1f}x the time")
PY
else
  echo
  echo "-- VM mode: skipped (needs target/kernel/vmlinux from make kernel, qemu-system-x86_64 and the VM runtime)"
fi
