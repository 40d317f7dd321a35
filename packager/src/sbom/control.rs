//! Debian control-file syntax (deb822), as dpkg's status database, distroless's `status.d/`
//! and DEP-5 copyright files write it: stanzas of `Field: value` lines separated by blank lines,
//! continuation lines starting with a space or tab.

/// One stanza: fields in file order, names as written, values with continuation lines joined
/// by `\n` (the leading space and a lone `.` line removed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stanza(pub Vec<(String, String)>);

impl Stanza {
    /// A field's value; names compare case-insensitively, as deb822 says.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first line of a field (a DEP-5 `License:` short name, a package description's
    /// synopsis).
    pub fn first_line(&self, name: &str) -> Option<&str> {
        self.get(name)
            .map(|v| v.lines().next().unwrap_or("").trim())
            .filter(|v| !v.is_empty())
    }
}

/// Parses every stanza; lines that are neither fields nor continuations (and `#` comments)
/// are skipped, since a database with one odd line should still list its packages.
pub fn parse(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.0.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.0.last_mut() {
                let l = line.trim();
                v.push('\n');
                if l != "." {
                    v.push_str(l);
                }
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            if !k.is_empty() && !k.contains(char::is_whitespace) {
                cur.0.push((k.to_string(), v.trim().to_string()));
            }
        }
    }
    if !cur.0.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_fields_and_continuations() {
        let s = parse(
            "Package: a\nDescription: short\n long line\n .\n more\n\n\n# c\nPackage: b\nbroken line\nversion: 1\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("package"), Some("a"));
        assert_eq!(s[0].get("Description"), Some("short\nlong line\n\nmore"));
        assert_eq!(s[0].first_line("Description"), Some("short"));
        assert_eq!(s[1].get("Version"), Some("1"));
    }
}
