//! `oci2bin push`: uploads an image (config, layers, manifest) to one repository. Blobs the
//! repository already has (`HEAD`) are skipped; the rest go up monolithically when small, in
//! chunks otherwise. The manifest is put byte for byte, so its digest is the image's.

use super::client::Client;
use super::RegistryError;
use crate::error::Result;
use crate::model::{Descriptor, Digest, Image};

/// Blobs up to this size go in one `PUT`; bigger ones in `PATCH`es of this size.
pub const CHUNK: usize = 8 << 20;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub digest: Digest,
    /// Blobs uploaded, and blobs the repository already had.
    pub uploaded: usize,
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

/// Pushes `image` as `tag` through `client` (made with [`Client::for_push`]). `note` hears
/// of each blob as it goes.
pub fn push(
    client: &Client,
    image: &Image,
    tag: &str,
    anonymous: bool,
    note: &dyn Fn(&str),
) -> Result<Pushed> {
    let e = |err| push_error(err, anonymous);
    let config = Descriptor::new(
        "application/octet-stream",
        image.config.digest,
        image.config.raw.len() as u64,
    );
    let (mut uploaded, mut skipped) = (0, 0);
    for (i, desc) in std::iter::once(&config)
        .chain(image.layers.iter())
        .enumerate()
    {
        let short = &desc.digest.hex()[..12];
        if client.has_blob(&desc.digest).map_err(e)? {
            note(&format!("blob {short} already there"));
            skipped += 1;
            continue;
        }
        note(&format!("uploading blob {short} ({} bytes)", desc.size));
        if i == 0 {
            client
                .upload_blob(desc, &mut &image.config.raw[..], CHUNK, &|_| {})
                .map_err(e)?;
        } else {
            let mut r = image.blobs.open(desc)?;
            client
                .upload_blob(desc, &mut r, CHUNK, &|_| {})
                .map_err(e)?;
        }
        uploaded += 1;
    }
    client
        .put_manifest(tag, &image.manifest.raw, &image.manifest.media_type)
        .map_err(e)?;
    Ok(Pushed {
        digest: image.manifest.digest,
        uploaded,
        skipped,
    })
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
}
