//! Docker's masked and read-only paths under `/proc` and `/sys` (moby's `oci.DefaultSpec`):
//! kernel interfaces a container has no business reading (`/proc/kcore`, `/proc/keys`, timer
//! and scheduler debug files, firmware tables) are hidden, and the kernel's tunables
//! (`/proc/sys`, `/proc/sysrq-trigger`, …) are read-only.

use super::Step;
use std::path::Path;

/// Hidden: a file under `/dev/null`, a directory under an empty read-only tmpfs.
pub const MASKED: &[&str] = &[
    "proc/asound",
    "proc/acpi",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Bound onto themselves read-only.
pub const READ_ONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// After `/proc` and `/sys` are mounted under `root`, before the pivot.
pub(super) fn proc_and_sys(root: &Path, steps: &mut Vec<Step>) {
    for p in READ_ONLY {
        steps.push(Step::ReadOnlyPath { path: root.join(p) });
    }
    for p in MASKED {
        steps.push(Step::MaskPath { path: root.join(p) });
    }
}
