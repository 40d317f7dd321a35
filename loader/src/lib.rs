//! The oci2bin loader: the on-disk [`format`] (shared with the packager) and, with the `runtime`
//! feature, everything the static loader does to run an image rootless.

pub mod caps;
pub mod format;
pub mod seccomp;

#[cfg(feature = "runtime")]
pub mod args;
#[cfg(feature = "runtime")]
pub mod cache;
#[cfg(feature = "runtime")]
pub mod cgroup;
#[cfg(feature = "runtime")]
pub mod copy;
#[cfg(feature = "runtime")]
pub mod exec;
#[cfg(feature = "runtime")]
pub mod extract;
#[cfg(feature = "runtime")]
pub mod gzip;
#[cfg(feature = "runtime")]
pub mod host;
#[cfg(feature = "runtime")]
pub mod init;
#[cfg(feature = "runtime")]
pub mod lifecycle;
#[cfg(feature = "runtime")]
pub mod patch;
#[cfg(feature = "runtime")]
pub mod plan;
#[cfg(feature = "runtime")]
pub mod selfexe;
#[cfg(feature = "runtime")]
pub mod shim;
#[cfg(feature = "runtime")]
pub mod stack;
#[cfg(feature = "runtime")]
pub mod storage;
#[cfg(feature = "runtime")]
pub mod sys;
#[cfg(feature = "runtime")]
pub mod tar;
#[cfg(feature = "runtime")]
pub mod users;
#[cfg(feature = "runtime")]
pub mod verify;
#[cfg(feature = "runtime")]
pub mod vm;

#[cfg(feature = "trust")]
pub mod trust;

pub mod cachedir;
pub mod containers;
pub mod subid;
