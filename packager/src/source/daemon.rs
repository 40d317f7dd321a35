//! `docker-daemon:REF`: an image from a running Docker Engine, as skopeo's transport of that name.
//!
//! The engine's API (`GET /images/{name}/get`, what `docker save` uses) streams a docker-archive;
//! it is spooled to an unlinked-on-drop temp file and read by the docker-archive source, which
//! keeps the file open, so nothing is left on disk. The API is spoken by bollard, the field's
//! Docker client, over `$DOCKER_HOST` or the default socket.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;

use crate::model::Image;

/// Where the engine is looked for when `$DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot reach the docker daemon at {socket}: {why} (is it running? set DOCKER_HOST to another one)")]
    Unreachable { socket: String, why: String },
    #[error("image {name} not found in the docker daemon at {socket}")]
    NoSuchImage { name: String, socket: String },
    #[error("docker daemon at {socket}: saving {name}: {why}")]
    Save {
        name: String,
        socket: String,
        why: String,
    },
}

/// The engine address as the user configured it, for messages.
pub fn socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string())
}

/// Saves `name` from the engine into a temp file in `tmpdir` and opens it as a docker-archive.
/// Also returns the RepoTag the archive names, for the output name.
pub fn open(
    name: &str,
    source: &str,
    tmpdir: &Path,
) -> crate::error::Result<(Image, Option<String>)> {
    let mut spool = tempfile::Builder::new()
        .prefix(".oci2bin-daemon-")
        .tempfile_in(tmpdir)
        .map_err(crate::error::Error::io(
            "cannot create a temp file in",
            tmpdir,
        ))?;
    save(&with_default_tag(name), spool.as_file_mut())?;
    // One image was saved, so the archive's only entry is it. The docker-archive source keeps
    // its own handle, so the name can go when `spool` drops.
    super::docker_archive::open(spool.path(), None, source)
}

/// `busybox` → `busybox:latest`: saved without a tag, the engine would export every tag of the
/// repository (skopeo's docker-daemon: also means `:latest` then).
pub fn with_default_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if name.contains('@') || last.contains(':') || name.starts_with("sha256:") {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Streams `docker save NAME` into `out`.
fn save(name: &str, out: &mut std::fs::File) -> Result<(), DaemonError> {
    let socket = socket();
    let unreachable = |e: &dyn std::fmt::Display| DaemonError::Unreachable {
        socket: socket.clone(),
        why: e.to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(&e))?;
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults().map_err(|e| unreachable(&e))?;
        match docker.inspect_image(name).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(DaemonError::NoSuchImage {
                    name: name.to_string(),
                    socket: socket.clone(),
                })
            }
            Err(e) => return Err(unreachable(&e)),
        }
        let failed = |why: String| DaemonError::Save {
            name: name.to_string(),
            socket: socket.clone(),
            why,
        };
        let mut stream = docker.export_image(name);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(e.to_string()))?;
            out.write_all(&chunk).map_err(|e| failed(e.to_string()))?;
        }
        out.flush().map_err(|e| failed(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_tag_means_latest_as_in_skopeo() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(with_default_tag("busybox:1.36"), "busybox:1.36");
        assert_eq!(with_default_tag("app@sha256:abcd"), "app@sha256:abcd");
        assert_eq!(with_default_tag("sha256:0123"), "sha256:0123");
    }
}
