//! The oci2bin loader: the on-disk [`format`] (shared with the packager) and, with the `runtime`
//! feature, everything the static loader does to run an image rootless.

pub mod format;

#[cfg(feature = "runtime")]
pub mod sys;
