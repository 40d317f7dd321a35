//! The CycloneDX 1.5 JSON BOM (the subset an image's package list needs), as serde models.

use serde::Serialize;

use super::license::{self, Term};
use super::{image_purl, purl, uuid_from, Inventory};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    pub bom_format: &'static str,
    pub spec_version: &'static str,
    pub serial_number: String,
    pub version: u32,
    pub metadata: Metadata,
    pub components: Vec<Component>,
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub timestamp: String,
    pub tools: Tools,
    pub component: Component,
}

#[derive(Debug, Serialize)]
pub struct Tools {
    pub components: Vec<Component>,
}

#[derive(Debug, Default, Serialize)]
pub struct Component {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier: Option<Entity>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<LicenseChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

#[derive(Debug, Serialize)]
pub struct Entity {
    pub name: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LicenseChoice {
    pub license: License,
}

/// An SPDX license id, or a name for a license that has none.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct License {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Property {
    pub name: &'static str,
    pub value: String,
}

fn prop(name: &'static str, value: impl Into<String>) -> Property {
    Property {
        name,
        value: value.into(),
    }
}

pub fn document(inv: &Inventory, created: &str) -> Bom {
    let mut components = Vec::new();
    if let Some(id) = &inv.os.id {
        components.push(Component {
            kind: "operating-system",
            bom_ref: Some(format!("os:{id}")),
            name: id.clone(),
            version: inv.os.version_id.clone(),
            ..Default::default()
        });
    }
    let mut refs = std::collections::HashSet::new();
    for p in &inv.packages {
        let purl = purl(p, &inv.os);
        let mut bom_ref = purl.clone();
        let mut n = 1;
        while !refs.insert(bom_ref.clone()) {
            n += 1;
            bom_ref = format!("{purl}#{n}");
        }
        // Every license term, as an id the SPDX list knows or by name: CycloneDX allows a
        // list of licenses or one expression, and a list keeps names without SPDX ids.
        let mut licenses: Vec<LicenseChoice> = Vec::new();
        for stated in &p.licenses {
            for t in license::parse(stated).terms() {
                let l = match t {
                    Term::Id(id) => License {
                        id: Some(id.clone()),
                        name: None,
                    },
                    Term::Other(name) => License {
                        id: None,
                        name: Some(name.clone()),
                    },
                };
                let choice = LicenseChoice { license: l };
                if !licenses.contains(&choice) {
                    licenses.push(choice);
                }
            }
        }
        let mut properties = vec![prop("oci2bin:package:database", &p.db)];
        if let Some(d) = inv.layers.get(p.layer) {
            properties.push(prop("oci2bin:layer:digest", d.to_string()));
            properties.push(prop("oci2bin:layer:index", p.layer.to_string()));
        }
        if let Some(s) = &p.source_name {
            properties.push(prop("oci2bin:package:source", s));
        }
        if let Some(v) = &p.source_version {
            properties.push(prop("oci2bin:package:source-version", v));
        }
        if let Some(a) = &p.arch {
            properties.push(prop("oci2bin:package:arch", a));
        }
        components.push(Component {
            kind: "library",
            bom_ref: Some(bom_ref),
            supplier: p
                .supplier
                .as_ref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| Entity { name: s.clone() }),
            name: p.name.clone(),
            version: Some(p.version.clone()),
            licenses,
            purl: Some(purl),
            properties,
        });
    }
    Bom {
        bom_format: "CycloneDX",
        spec_version: "1.5",
        serial_number: format!(
            "urn:uuid:{}",
            uuid_from(format!("cyclonedx {} {created}", inv.digest).as_bytes())
        ),
        version: 1,
        metadata: Metadata {
            timestamp: created.to_string(),
            tools: Tools {
                components: vec![Component {
                    kind: "application",
                    name: "oci2bin".into(),
                    version: Some(env!("CARGO_PKG_VERSION").into()),
                    ..Default::default()
                }],
            },
            component: Component {
                kind: "container",
                bom_ref: Some(image_purl(inv)),
                name: inv.name.clone(),
                version: Some(inv.digest.to_string()),
                purl: Some(image_purl(inv)),
                ..Default::default()
            },
        },
        components,
    }
}
