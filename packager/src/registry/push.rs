//! `oci2bin push`: uploads an image (config, layers, manifest) to one repository. Blobs the
//! repository already has (`HEAD`) are skipped; the rest go up monolithically when small, in
//! chunks otherwise. The manifest is put byte for byte, so its digest is the image's.

use super::client::{Client, Mount};
use super::RegistryError;
use crate::error::Result;
use crate::model::{Descriptor, Digest, Image};

/// Blobs up to this size go in one `PUT`; bigger ones in `PATCH`es of this size.
pub const CHUNK: usize = 8 << 20;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The digest of what the tag now names (the manifest, or the index with `--all`).
    pub digest: Digest,
    /// Blobs uploaded, mounted from another repository of the registry, and already there.
    pub uploaded: usize,
    pub mounted: usize,
    pub skipped: usize,
}

/// The push form of an auth error: a 401 or 403 says the account may not push, and how to log in.
fn push_error(e: RegistryError, anonymous: bool) -> RegistryError {
    match e {
        RegistryError::Unauthorized { host, repository }
        | RegistryError::BadCredentials { host, repository } => RegistryError::PushDenied {
            host,
            repository,
            status: "401 unauthorized",
            message: if anonymous {
                "no credentials given".into()
            } else {
                "the credentials were refused or may not push".into()
            },
        },
        RegistryError::Denied {
            host,
            repository,
            message,
        } => RegistryError::PushDenied {
            host,
            repository,
            status: "403 forbidden",
            message,
        },
        e => e,
    }
}

/// Where a push may mount blobs from: the repository the image came from, when it is another
/// repository on the registry being pushed to (`origin` and `dest` are `(host, repository)` as
/// the registry names them, e.g. `registry-1.docker.io`, `library/alpine`).
pub fn mount_source(origin: Option<(&str, &str)>, dest: (&str, &str)) -> Option<String> {
    let (host, repository) = origin?;
    (host == dest.0 && repository != dest.1).then(|| repository.to_string())
}

/// How a push goes.
pub struct PushOptions<'a> {
    /// Whether no credentials were given (a 401 then says so).
    pub anonymous: bool,
    /// A repository of the same registry that holds the blobs ([`mount_source`]).
    pub mount_from: Option<&'a str>,
    /// Hears of each blob as it goes.
    pub note: &'a dyn Fn(&str),
}

/// Pushes `image` as `tag` through `client` (made with [`Client::for_push`]).
pub fn push(client: &Client, image: &Image, tag: &str, opts: &PushOptions) -> Result<Pushed> {
    let mut pushed = Pushed {
        digest: image.manifest.digest,
        uploaded: 0,
        mounted: 0,
        skipped: 0,
    };
    push_image(client, image, tag, opts, &mut pushed)?;
    Ok(pushed)
}

/// Pushes a multi-platform index as `tag`: each image's blobs and its manifest (by digest),
/// then the index's exact bytes, so the tag names the same digest as the source's.
pub fn push_index(
    client: &Client,
    index: &IndexBytes,
    images: &[Image],
    tag: &str,
    opts: &PushOptions,
) -> Result<Pushed> {
    let mut pushed = Pushed {
        digest: Digest::of(&index.raw),
        uploaded: 0,
        mounted: 0,
        skipped: 0,
    };
    for image in images {
        let digest = image.manifest.digest.to_string();
        push_image(client, image, &digest, opts, &mut pushed)?;
    }
    client
        .put_manifest(tag, &index.raw, &index.media_type)
        .map_err(|e| push_error(e, opts.anonymous))?;
    Ok(pushed)
}

/// An image index as the source holds it.
#[derive(Debug, Clone)]
pub struct IndexBytes {
    pub raw: Vec<u8>,
    pub media_type: String,
}

fn push_image(
    client: &Client,
    image: &Image,
    reference: &str,
    opts: &PushOptions,
    pushed: &mut Pushed,
) -> Result<()> {
    let e = |err| push_error(err, opts.anonymous);
    let config = Descriptor::new(
        "application/octet-stream",
        image.config.digest,
        image.config.raw.len() as u64,
    );
    for (i, desc) in std::iter::once(&config)
        .chain(image.layers.iter())
        .enumerate()
    {
        let short = &desc.digest.hex()[..12];
        if client.has_blob(&desc.digest).map_err(e)? {
            (opts.note)(&format!("blob {short} already there"));
            pushed.skipped += 1;
            continue;
        }
        let mut session = None;
        if let Some(from) = opts.mount_from {
            match client.mount_blob(&desc.digest, from).map_err(e)? {
                Mount::Mounted => {
                    (opts.note)(&format!("blob {short} mounted from {from}"));
                    pushed.mounted += 1;
                    continue;
                }
                Mount::Upload(location) => session = Some(location),
            }
        }
        (opts.note)(&format!("uploading blob {short} ({} bytes)", desc.size));
        if i == 0 {
            client
                .upload_blob(desc, &mut &image.config.raw[..], CHUNK, session, &|_| {})
                .map_err(e)?;
        } else {
            let mut r = image.blobs.open(desc)?;
            client
                .upload_blob(desc, &mut r, CHUNK, session, &|_| {})
                .map_err(e)?;
        }
        pushed.uploaded += 1;
    }
    client
        .put_manifest(reference, &image.manifest.raw, &image.manifest.media_type)
        .map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_errors_say_push_and_how_to_log_in() {
        let e = push_error(
            RegistryError::Unauthorized {
                host: "h:5000".into(),
                repository: "o/app".into(),
            },
            true,
        )
        .to_string();
        assert!(
            e.starts_with("push access to o/app on h:5000 denied (401"),
            "{e}"
        );
        assert!(e.contains("oci2bin login h:5000"), "{e}");
        let e = push_error(
            RegistryError::Denied {
                host: "h".into(),
                repository: "r".into(),
                message: "nope".into(),
            },
            false,
        )
        .to_string();
        assert!(e.contains("(403 forbidden): nope: log in"), "{e}");
        let other = RegistryError::Cancelled;
        assert!(matches!(push_error(other, true), RegistryError::Cancelled));
    }

    #[test]
    fn blobs_are_mounted_only_from_another_repository_of_the_same_registry() {
        let dest = ("reg:5000", "team/app");
        assert_eq!(
            mount_source(Some(("reg:5000", "base/debian")), dest),
            Some("base/debian".into())
        );
        assert_eq!(mount_source(Some(("reg:5000", "team/app")), dest), None);
        assert_eq!(
            mount_source(Some(("other:5000", "base/debian")), dest),
            None
        );
        assert_eq!(mount_source(None, dest), None);
    }
}
