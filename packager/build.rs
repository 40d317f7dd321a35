//! Embeds the static loader into the packager when one has been built, so an installed `oci2bin`
//! is one self-sufficient file. Without a loader the packager still builds; it then needs
//! `--loader` / `OCI2BIN_LOADER` at run time. The VM runtime (`--vm`) is embedded the same way.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const LOADER_REL: &str = "x86_64-unknown-linux-musl/loader/loader";
const VM_RUNTIME_REL: &str = "x86_64-unknown-linux-musl/loader/loader-vm";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest_dir
        .parent()
        .expect("packager lives in the workspace")
        .to_path_buf();
    let mut code = String::new();
    for (var, rel, konst, what) in [
        ("OCI2BIN_EMBED_LOADER", LOADER_REL, "EMBEDDED", "The loader"),
        (
            "OCI2BIN_EMBED_VM_RUNTIME",
            VM_RUNTIME_REL,
            "EMBEDDED_VM_RUNTIME",
            "The VM runtime (`--vm`)",
        ),
    ] {
        code.push_str(&match chosen(&workspace, var, rel) {
            Some(p) => {
                let p = p.canonicalize().expect("embedded path resolves");
                format!(
                    "/// {what} built with this packager.\npub const {konst}: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                    p.display().to_string()
                )
            }
            None => format!(
                "/// {what}: none was built before this packager.\npub const {konst}: Option<&[u8]> = None;\n"
            ),
        });
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("embedded_loader.rs");
    fs::write(out, code).expect("write embedded_loader.rs");
}

/// The file `var` names, else `rel` under the target directory if it was built.
fn chosen(workspace: &Path, var: &str, rel: &str) -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed={var}");
    match env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            let p = if p.is_relative() {
                workspace.join(p)
            } else {
                p
            };
            if !p.is_file() {
                panic!("{var} names {} which is not a file", p.display());
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
            let built = target.join(rel);
            // Watch the file, or the nearest directory that will hold it, so building it later
            // re-embeds it. (A missing path would make cargo rerun this script every time.)
            let watch = [built.clone(), built.parent().unwrap().to_path_buf()]
                .into_iter()
                .chain(built.parent().unwrap().parent().map(Path::to_path_buf))
                .find(|p| p.exists());
            if let Some(w) = watch {
                println!("cargo:rerun-if-changed={}", w.display());
            }
            built.is_file().then_some(built)
        }
    }
}
