//! Process, namespace, mount and signal syscalls.
