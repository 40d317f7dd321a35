//! File-system syscalls (openat2, mknodat, linkat, utimensat, renameat2, flock).
