//! oci2bin, the packager: turns an OCI/Docker image into one executable file that is also an
//! image archive.
//!
//! Shape (go-containerregistry's): [`source`]s yield one in-memory [`model::Image`], [`mutate`]
//! functions map images to images, [`sink`]s consume them. The on-disk contract lives in
//! `loader::format`.

pub mod cache;
pub mod cleanup;
pub mod cli;
pub mod containers;
pub mod cosign;
pub mod credentials;
pub mod error;
pub mod inspect;
pub mod loader_bin;
pub mod metadata;
pub mod model;
pub mod mutate;
pub mod platform;
pub mod reference;
pub mod registries_conf;
pub mod registry;
pub mod registry_name;
pub mod sbom;
pub mod sink;
pub mod source;
pub mod trust;
pub mod vm;
pub mod volumes;

pub use error::{Error, Result};
