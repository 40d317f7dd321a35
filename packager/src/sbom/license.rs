//! License names as packages state them (DEP-5 short names such as `GPL-2+` or `Expat`, apk's
//! SPDX-like expressions) turned into SPDX: known names map to SPDX license ids, the rest become
//! `LicenseRef-` ids that the document then defines.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The SPDX license list ids, as the CycloneDX 1.5 schema enumerates them.
const SPDX_IDS: &str = include_str!("spdx_ids.txt");

/// The SPDX id for a license name, case-insensitively, with Debian's short names mapped
/// (`GPL-2+` → `GPL-2.0-or-later`, `Expat` → `MIT`); `None` when there is none.
pub fn spdx_id(name: &str) -> Option<String> {
    let (base, later) = match name.strip_suffix('+') {
        Some(b) => (b, true),
        None => (name, false),
    };
    let lower = base.to_ascii_lowercase();
    // The GNU licenses: DEP-5 writes GPL-2, SPDX GPL-2.0-only.
    for family in ["agpl", "lgpl", "gpl", "gfdl"] {
        if let Some(v) = lower.strip_prefix(family).and_then(|v| v.strip_prefix('-')) {
            let v = v
                .trim_end_matches("-only")
                .trim_end_matches("-or-later")
                .to_string();
            let later = later || lower.ends_with("-or-later");
            let v = if v.contains('.') { v } else { format!("{v}.0") };
            let id = format!(
                "{}-{v}-{}",
                family.to_ascii_uppercase(),
                if later { "or-later" } else { "only" }
            );
            return lookup(&id);
        }
    }
    if later {
        return None;
    }
    let mapped = match lower.as_str() {
        "expat" => "MIT",
        "apache-2" => "Apache-2.0",
        "artistic" | "artistic-1" => "Artistic-1.0",
        "artistic-2" => "Artistic-2.0",
        "cc0" => "CC0-1.0",
        "mpl-2" => "MPL-2.0",
        "zlib" => "Zlib",
        _ => base,
    };
    lookup(mapped)
}

fn lookup(id: &str) -> Option<String> {
    static BY_LOWER: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    let ids = BY_LOWER.get_or_init(|| {
        SPDX_IDS
            .lines()
            .map(|l| (l.to_ascii_lowercase(), l))
            .collect()
    });
    ids.get(&id.to_ascii_lowercase()).map(|s| s.to_string())
}

/// A name made into a `LicenseRef-` id (letters, digits, `.` and `-` only).
pub fn license_ref(name: &str) -> String {
    let body: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{body}")
}

/// One license term of an expression: an SPDX id, or a name that has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Id(String),
    Other(String),
}

/// A stated license as SPDX tokens. A name with an exception written Debian's way
/// (`GPL-2+ with OpenSSL exception`), or anything that does not parse as an expression, stays
/// one term: SPDX names exceptions differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr(Vec<Token>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Term(Term),
    Op(&'static str),
    Open,
    Close,
}

pub fn parse(stated: &str) -> Expr {
    let stated = stated.trim();
    let whole = || Expr(vec![Token::Term(Term::Other(stated.to_string()))]);
    let mut raw: Vec<&str> = Vec::new();
    for w in stated.split_whitespace() {
        let mut rest = w;
        while let Some(r) = rest.strip_prefix('(') {
            raw.push("(");
            rest = r;
        }
        let mut closes = 0;
        while let Some(r) = rest.strip_suffix(')') {
            closes += 1;
            rest = r;
        }
        let rest = rest.trim_end_matches([',', ';']);
        if !rest.is_empty() {
            raw.push(rest);
        }
        raw.extend(std::iter::repeat_n(")", closes));
    }
    if raw.is_empty() || raw.iter().any(|w| w.eq_ignore_ascii_case("with")) {
        return whole();
    }
    // Operands and operators must alternate; two names in a row (`GPL-2, BSD`) both apply.
    let mut tokens = Vec::new();
    let mut want_operand = true;
    let mut depth = 0i32;
    for w in raw {
        let op = if w.eq_ignore_ascii_case("or") || w == "|" {
            Some("OR")
        } else if w.eq_ignore_ascii_case("and") || w == "&" {
            Some("AND")
        } else {
            None
        };
        match (op, w, want_operand) {
            (Some(op), _, false) => {
                tokens.push(Token::Op(op));
                want_operand = true;
            }
            (Some(_), _, true) => return whole(),
            (None, ")", false) => {
                depth -= 1;
                if depth < 0 {
                    return whole();
                }
                tokens.push(Token::Close);
            }
            (None, ")", true) => return whole(),
            (None, w, _) => {
                if !want_operand {
                    tokens.push(Token::Op("AND"));
                }
                if w == "(" {
                    depth += 1;
                    tokens.push(Token::Open);
                    want_operand = true;
                } else {
                    tokens.push(Token::Term(match spdx_id(w) {
                        Some(id) => Term::Id(id),
                        None => Term::Other(w.to_string()),
                    }));
                    want_operand = false;
                }
            }
        }
    }
    if want_operand || depth != 0 {
        return whole();
    }
    Expr(tokens)
}

impl Expr {
    /// As an SPDX license expression, with unknown names as `LicenseRef-` ids.
    pub fn spdx(&self) -> String {
        let mut s = String::new();
        for t in &self.0 {
            match t {
                Token::Close => s.push(')'),
                t => {
                    if !s.is_empty() && !s.ends_with('(') {
                        s.push(' ');
                    }
                    match t {
                        Token::Open => s.push('('),
                        Token::Op(op) => s.push_str(op),
                        Token::Term(Term::Id(id)) => s.push_str(id),
                        Token::Term(Term::Other(name)) => s.push_str(&license_ref(name)),
                        Token::Close => unreachable!(),
                    }
                }
            }
        }
        s
    }

    /// The license terms, operators dropped.
    pub fn terms(&self) -> impl Iterator<Item = &Term> {
        self.0.iter().filter_map(|t| match t {
            Token::Term(t) => Some(t),
            _ => None,
        })
    }

    pub fn is_compound(&self) -> bool {
        self.0.len() > 1
    }
}

/// The SPDX expression for all of a package's stated licenses together (all apply: `AND`).
pub fn combined(stated: &[String]) -> Option<String> {
    let parts: Vec<String> = stated
        .iter()
        .map(|s| parse(s))
        .map(|e| {
            if e.is_compound() && stated.len() > 1 {
                format!("({})", e.spdx())
            } else {
                e.spdx()
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_short_names_map_to_spdx_ids() {
        assert_eq!(spdx_id("GPL-2+").as_deref(), Some("GPL-2.0-or-later"));
        assert_eq!(spdx_id("GPL-2").as_deref(), Some("GPL-2.0-only"));
        assert_eq!(spdx_id("LGPL-2.1+").as_deref(), Some("LGPL-2.1-or-later"));
        assert_eq!(
            spdx_id("GPL-3.0-or-later").as_deref(),
            Some("GPL-3.0-or-later")
        );
        assert_eq!(spdx_id("Expat").as_deref(), Some("MIT"));
        assert_eq!(spdx_id("bsd-3-clause").as_deref(), Some("BSD-3-Clause"));
        assert_eq!(spdx_id("public-domain"), None);
        assert_eq!(spdx_id("MIT+"), None);
    }

    #[test]
    fn expressions_keep_their_operators_and_refs_for_unknown_names() {
        assert_eq!(
            parse("GPL-2+ or Artistic").spdx(),
            "GPL-2.0-or-later OR Artistic-1.0"
        );
        assert_eq!(
            parse("MIT AND (BSD-2-Clause OR public-domain)").spdx(),
            "MIT AND (BSD-2-Clause OR LicenseRef-public-domain)"
        );
        assert_eq!(
            parse("GPL-2+ with OpenSSL exception").spdx(),
            "LicenseRef-GPL-2--with-OpenSSL-exception"
        );
    }

    #[test]
    fn what_does_not_parse_stays_one_name() {
        assert_eq!(parse("or MIT").spdx(), "LicenseRef-or-MIT");
        assert_eq!(parse("(MIT").spdx(), "LicenseRef--MIT");
        assert_eq!(
            parse("GPL-2, BSD").spdx(),
            "GPL-2.0-only AND LicenseRef-BSD"
        );
    }

    #[test]
    fn several_stated_licenses_all_apply() {
        let s = combined(&["GPL-2+".into(), "BSD-3-clause or Expat".into()]).unwrap();
        assert_eq!(s, "GPL-2.0-or-later AND (BSD-3-Clause OR MIT)");
        assert_eq!(combined(&[]), None);
    }
}
