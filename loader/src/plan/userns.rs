//! Which user namespace a run gets: the caller's subordinate id range mapped by the setuid
//! `newuidmap`/`newgidmap` (rootless podman's map, or its `keep-id` one), or the single-uid
//! namespace the rest of the plan then patches the root filesystem for. Decided before the root
//! filesystem is prepared, since a mapped run extracts its own entry inside that namespace.

use super::PlanError;
use crate::args::Userns;
use crate::subid::{self, IdMap};
use std::path::PathBuf;

/// What the host offers for a mapped namespace (gathered by [`crate::host::id_facts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdFacts {
    /// The caller's effective uid/gid and login name (from the host's /etc/passwd).
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
    /// The caller's ranges in /etc/subuid and /etc/subgid.
    pub subuid: Vec<(u32, u32)>,
    pub subgid: Vec<(u32, u32)>,
    /// The helpers, where found.
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
}

/// A mapped namespace to enter (see [`crate::exec::enter_mapped`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
    pub keep_id: bool,
    /// `--userns auto`: if the helpers fail, warn and run with a single uid instead.
    pub fallback: bool,
}

impl Mapping {
    /// The maps as one text, for the cache key of the entry extracted under them.
    pub fn key_text(&self) -> String {
        format!(
            "u{};g{}",
            subid::map_text(&self.uid_map),
            subid::map_text(&self.gid_map)
        )
    }
}

/// The mapping `mode` asks for on this host: `None` for a single-uid run.
pub fn userns(mode: Userns, ids: &IdFacts) -> Result<Option<Mapping>, PlanError> {
    if mode == Userns::Single {
        return Ok(None);
    }
    let who = ids.user.clone().unwrap_or_else(|| ids.uid.to_string());
    let missing = if ids.subuid.is_empty() {
        Some(format!("/etc/subuid has no range for {who}"))
    } else if ids.subgid.is_empty() {
        Some(format!("/etc/subgid has no range for {who}"))
    } else if ids.newuidmap.is_none() || ids.newgidmap.is_none() {
        Some("newuidmap/newgidmap not found (Debian package uidmap)".to_string())
    } else {
        None
    };
    let keep_id = mode == Userns::KeepId;
    match (missing, mode) {
        (Some(_), Userns::Auto) => Ok(None),
        (Some(why), _) => Err(PlanError::NoRange {
            mode: if keep_id { "keep-id" } else { "map" },
            why,
        }),
        (None, _) => {
            let (own_uid, own_gid) = if keep_id { (ids.uid, ids.gid) } else { (0, 0) };
            Ok(Some(Mapping {
                uid_map: subid::build_map(ids.uid, own_uid, &ids.subuid),
                gid_map: subid::build_map(ids.gid, own_gid, &ids.subgid),
                newuidmap: ids.newuidmap.clone().unwrap_or_default(),
                newgidmap: ids.newgidmap.clone().unwrap_or_default(),
                keep_id,
                fallback: mode == Userns::Auto,
            }))
        }
    }
}
