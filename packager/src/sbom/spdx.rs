//! The SPDX 2.3 JSON document (the subset an image's package list needs), as serde models.

use serde::Serialize;

use super::license;
use super::{image_purl, package_key, purl, uuid_from, Inventory, Kind, Package};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub spdx_version: &'static str,
    pub data_license: &'static str,
    #[serde(rename = "SPDXID")]
    pub spdx_id: &'static str,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    pub packages: Vec<SpdxPackage>,
    pub relationships: Vec<Relationship>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub has_extracted_licensing_infos: Vec<ExtractedLicense>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpdxPackage {
    pub name: String,
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub version_info: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    pub download_location: &'static str,
    pub files_analyzed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    pub license_concluded: &'static str,
    pub license_declared: String,
    pub copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    pub reference_category: &'static str,
    pub reference_type: &'static str,
    pub reference_locator: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    pub spdx_element_id: String,
    pub related_spdx_element: String,
    pub relationship_type: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedLicense {
    pub license_id: String,
    pub name: String,
    pub extracted_text: String,
}

const NOASSERTION: &str = "NOASSERTION";
const IMAGE_ID: &str = "SPDXRef-Image";

/// SPDX ids allow letters, digits, `.` and `-`.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `Name <mail>` → `Person: Name (mail)`; rpm's vendor is an organization.
fn supplier(p: &Package) -> Option<String> {
    let s = p.supplier.as_deref()?.trim();
    if s.is_empty() {
        return None;
    }
    let who = match s.split_once('<') {
        Some((name, rest)) => format!("{} ({})", name.trim(), rest.trim_end_matches('>').trim()),
        None => s.to_string(),
    };
    Some(match p.kind {
        Kind::Rpm => format!("Organization: {who}"),
        _ => format!("Person: {who}"),
    })
}

pub fn document(inv: &Inventory, created: &str) -> Document {
    let mut packages = vec![SpdxPackage {
        name: inv.name.clone(),
        spdx_id: IMAGE_ID.to_string(),
        version_info: inv.digest.to_string(),
        supplier: None,
        download_location: NOASSERTION,
        files_analyzed: false,
        source_info: None,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.to_string(),
        copyright_text: NOASSERTION,
        comment: inv
            .os
            .pretty_name
            .as_ref()
            .map(|os| format!("operating system: {os}")),
        external_refs: vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: image_purl(inv),
        }],
        primary_package_purpose: Some("CONTAINER"),
    }];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        related_spdx_element: IMAGE_ID.into(),
        relationship_type: "DESCRIBES",
    }];
    let mut extracted: Vec<ExtractedLicense> = Vec::new();
    for p in &inv.packages {
        let id = format!(
            "SPDXRef-Package-{}-{}-{}",
            p.kind.purl_type(),
            id_part(&p.name),
            package_key(p)
        );
        for stated in &p.licenses {
            for term in license::parse(stated).terms() {
                let license::Term::Other(name) = term else {
                    continue;
                };
                let license_id = license::license_ref(name);
                if extracted.iter().any(|e| e.license_id == license_id) {
                    continue;
                }
                let text = p.license_texts.get(name).cloned().unwrap_or_else(|| {
                    format!(
                        "the license named \"{name}\" by package {} ({}); its text is not in the database",
                        p.name, p.db
                    )
                });
                extracted.push(ExtractedLicense {
                    license_id,
                    name: name.clone(),
                    extracted_text: text,
                });
            }
        }
        let layer = inv.layers.get(p.layer).map(|d| d.to_string());
        packages.push(SpdxPackage {
            name: p.name.clone(),
            spdx_id: id.clone(),
            version_info: p.version.clone(),
            supplier: supplier(p),
            download_location: NOASSERTION,
            files_analyzed: false,
            source_info: Some(format!("listed in {}", p.db)),
            license_concluded: NOASSERTION,
            license_declared: license::combined(&p.licenses)
                .unwrap_or_else(|| NOASSERTION.to_string()),
            copyright_text: NOASSERTION,
            comment: layer.map(|d| {
                format!(
                    "installed by layer {} of {} ({d})",
                    p.layer + 1,
                    inv.layers.len()
                )
            }),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: purl(p, &inv.os),
            }],
            primary_package_purpose: None,
        });
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.into(),
            related_spdx_element: id,
            relationship_type: "CONTAINS",
        });
    }
    Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: format!("{}@{}", inv.name, inv.digest),
        document_namespace: format!(
            "https://oci2bin.invalid/spdxdocs/{}-{}",
            id_part(&inv.name),
            uuid_from(format!("spdx {} {created}", inv.digest).as_bytes())
        ),
        creation_info: CreationInfo {
            created: created.to_string(),
            creators: vec![format!("Tool: oci2bin-{}", env!("CARGO_PKG_VERSION"))],
        },
        packages,
        relationships,
        has_extracted_licensing_infos: extracted,
    }
}
