//! Mutations: functions from an image to an image. Config edits rewrite the config JSON (keeping
//! every field they do not touch) and the manifest that points at it; layers are untouched.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{Digest, Image};
use crate::reference::ImageName;

/// Config edits from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigEdits {
    /// `Some(vec![])` clears the entrypoint. Setting it without `cmd` clears Cmd, as a
    /// Dockerfile's ENTRYPOINT does for an inherited CMD.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE`: replaces KEY's value, or is appended.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

impl ConfigEdits {
    pub fn is_empty(&self) -> bool {
        *self == ConfigEdits::default()
    }
}

/// Parses an `--entrypoint`/`--cmd` value: a JSON array of strings, or a plain string taken as
/// one argument (`""` means an empty list).
pub fn parse_command(s: &str) -> Result<Vec<String>> {
    let t = s.trim_start();
    if t.starts_with('[') {
        return serde_json::from_str(t)
            .map_err(|e| Error::Invalid(format!("`{s}` is not a JSON array of strings: {e}")));
    }
    Ok(if s.is_empty() {
        Vec::new()
    } else {
        vec![s.to_string()]
    })
}

/// Applies config edits; returns the image unchanged when there are none.
pub fn edit_config(image: Image, edits: &ConfigEdits) -> Result<Image> {
    if edits.is_empty() {
        return Ok(image);
    }
    for e in &edits.env {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() => {}
            _ => return Err(Error::Invalid(format!("--env `{e}` is not KEY=VALUE"))),
        }
    }
    let mut config: Value =
        serde_json::from_slice(&image.config.raw).map_err(Error::json("image config"))?;
    let root = config
        .as_object_mut()
        .ok_or_else(|| Error::Invalid("image config is not an object".into()))?;
    let run = root
        .entry("config")
        .or_insert_with(|| Value::Object(Default::default()));
    if run.is_null() {
        *run = Value::Object(Default::default());
    }
    let run = run
        .as_object_mut()
        .ok_or_else(|| Error::Invalid("image config's `config` is not an object".into()))?;
    if let Some(ep) = &edits.entrypoint {
        run.insert("Entrypoint".into(), ep.clone().into());
        if edits.cmd.is_none() {
            run.remove("Cmd");
        }
    }
    if let Some(cmd) = &edits.cmd {
        run.insert("Cmd".into(), cmd.clone().into());
    }
    if !edits.env.is_empty() {
        let mut env: Vec<String> = run
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for e in &edits.env {
            let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
            match env
                .iter_mut()
                .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key)
            {
                Some(slot) => *slot = e.clone(),
                None => env.push(e.clone()),
            }
        }
        run.insert("Env".into(), env.into());
    }
    if let Some(w) = &edits.workdir {
        run.insert("WorkingDir".into(), w.clone().into());
    }
    if let Some(u) = &edits.user {
        run.insert("User".into(), u.clone().into());
    }
    let config = serde_json::to_vec(&config).expect("config serializes");
    replace_config(image, config)
}

/// Points the image at new config bytes, rewriting the manifest's config descriptor.
pub fn replace_config(image: Image, config: Vec<u8>) -> Result<Image> {
    let mut manifest: Value =
        serde_json::from_slice(&image.manifest.raw).map_err(Error::json("image manifest"))?;
    let desc = manifest
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Error::Invalid("image manifest has no config descriptor".into()))?;
    desc.insert("digest".into(), Digest::of(&config).to_string().into());
    desc.insert("size".into(), (config.len() as u64).into());
    let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
    let source_digest = image.source_digest;
    let mut out = Image::new(
        manifest,
        Some(&image.manifest.media_type),
        config,
        image.blobs,
        image.name,
        image.source,
    )?;
    out.source_digest = source_digest;
    Ok(out)
}

/// Renames the image (`--tag`).
pub fn set_name(mut image: Image, name: ImageName) -> Image {
    image.name = name;
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::tiny_image;

    #[test]
    fn commands_parse_from_json_or_a_plain_string() {
        assert_eq!(
            parse_command(r#"["sh","-c","echo hi"]"#).unwrap(),
            ["sh", "-c", "echo hi"]
        );
        assert_eq!(
            parse_command("/bin/app --flag").unwrap(),
            ["/bin/app --flag"]
        );
        assert_eq!(parse_command("").unwrap(), Vec::<String>::new());
        assert!(parse_command("[1,2]").is_err());
    }

    #[test]
    fn config_edits_rewrite_config_and_manifest_and_keep_the_rest() {
        let image = tiny_image();
        let before = image.manifest.digest;
        let edits = ConfigEdits {
            entrypoint: Some(vec!["/bin/sh".into()]),
            env: vec!["PATH=/x".into(), "NEW=1".into()],
            workdir: Some("/w".into()),
            ..Default::default()
        };
        let out = edit_config(image, &edits).unwrap();
        let rc = out.run_config();
        assert_eq!(rc.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(
            rc.cmd, None,
            "an entrypoint without --cmd clears the inherited Cmd"
        );
        assert_eq!(rc.env, ["PATH=/x", "NEW=1"]);
        assert_eq!(rc.workdir, "/w");
        assert_eq!(rc.labels.get("keep").map(String::as_str), Some("me"));
        assert_ne!(out.manifest.digest, before);
        assert_eq!(out.source_digest, before);
        assert_eq!(
            out.manifest.parsed.config().digest().to_string(),
            out.config.digest.to_string()
        );
    }

    #[test]
    fn no_edits_leave_the_digest_alone() {
        let image = tiny_image();
        let d = image.manifest.digest;
        assert_eq!(
            edit_config(image, &ConfigEdits::default())
                .unwrap()
                .manifest
                .digest,
            d
        );
    }

    #[test]
    fn env_edits_must_be_key_value() {
        let edits = ConfigEdits {
            env: vec!["NOEQUALS".into()],
            ..Default::default()
        };
        assert!(edit_config(tiny_image(), &edits).is_err());
    }
}
