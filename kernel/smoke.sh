#!/usr/bin/env bash
# Boots a vmlinux to a busybox init under `qemu-system-x86_64 -M microvm` (KVM when /dev/kvm
# works, else TCG emulation) and checks that init ran and the guest shut down: the kernel
# config's smoke test, before any loader is involved.
# usage: kernel/smoke.sh [VMLINUX]       (default target/kernel/vmlinux)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vmlinux=${1:-$here/../target/kernel/vmlinux}
busybox=$(command -v busybox || true)
for need in "$vmlinux" "$busybox"; do
  [ -n "$need" ] && [ -e "$need" ] || { echo "smoke: missing ${need:-busybox} (make kernel; apt-get install busybox-static)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/proc"
cp "$busybox" "$work/root/bin/busybox"
cat >"$work/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "init ran: $(/bin/busybox uname -r), $(/bin/busybox nproc) cpus"
/bin/busybox reboot -f
INIT
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$work/initrd.gz")
boot() {
  timeout 120 qemu-system-x86_64 -M microvm,x-option-roms=off,acpi=off -accel "$1" \
    -cpu max -smp 2 -m 256 -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
    -kernel "$vmlinux" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet rdinit=/init" 2>&1 || true
}
# KVM where it works; a nested guest that dies under it (as on VMs without nested
# virtualisation) is said and the boot redone in emulation.
for accel in kvm tcg; do
  [ "$accel" = kvm ] && [ ! -w /dev/kvm ] && continue
  start=$(date +%s%N)
  out=$(boot "$accel")
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  if grep -q "init ran:" <<<"$out"; then
    echo "smoke: $(grep 'init ran:' <<<"$out" | tr -d '\r') ($accel, ${ms} ms to power off)"
    exit 0
  fi
  echo "smoke: the guest never ran init under $accel:" >&2
  echo "$out" | tail -5 >&2
done
exit 1
