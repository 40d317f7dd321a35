//! Embeds the static loader into the packager when one has been built, so an installed `oci2bin`
//! is one self-sufficient file. Without a loader the packager still builds; it then needs
//! `--loader` / `OCI2BIN_LOADER` at run time.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const LOADER_REL: &str = "x86_64-unknown-linux-musl/loader/loader";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=OCI2BIN_EMBED_LOADER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest_dir
        .parent()
        .expect("packager lives in the workspace")
        .to_path_buf();

    let chosen = match env::var_os("OCI2BIN_EMBED_LOADER").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            let p = if p.is_relative() {
                workspace.join(p)
            } else {
                p
            };
            if !p.is_file() {
                panic!(
                    "OCI2BIN_EMBED_LOADER names {} which is not a file",
                    p.display()
                );
            }
            println!("cargo:rerun-if-changed={}", p.display());
            Some(p)
        }
        None => {
            let target = match env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
                Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
                Some(t) => workspace.join(t),
                None => workspace.join("target"),
            };
            let loader = target.join(LOADER_REL);
            // Watch the loader, or the nearest directory that will hold it, so building the loader
            // later re-embeds it. (A missing path would make cargo rerun this script every time.)
            let watch = [loader.clone(), loader.parent().unwrap().to_path_buf()]
                .into_iter()
                .chain(loader.parent().unwrap().parent().map(Path::to_path_buf))
                .find(|p| p.exists());
            if let Some(w) = watch {
                println!("cargo:rerun-if-changed={}", w.display());
            }
            loader.is_file().then_some(loader)
        }
    };

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("embedded_loader.rs");
    let code = match chosen {
        Some(p) => {
            let p = p.canonicalize().expect("loader path resolves");
            format!(
                "/// The loader built with this packager.\npub const EMBEDDED: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                p.display().to_string()
            )
        }
        None => "/// No loader was built before this packager.\npub const EMBEDDED: Option<&[u8]> = None;\n".to_string(),
    };
    fs::write(out, code).expect("write embedded_loader.rs");
}
