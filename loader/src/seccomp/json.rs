//! The JSON subset a seccomp profile needs, with no dependencies (the loader parses a
//! `--seccomp-profile FILE` at run time and must stay small): objects, arrays, strings with
//! every escape, integers, `true`, `false`, `null`. Fractions and exponents are refused (no
//! profile field takes one). Nesting is bounded so a hostile file cannot exhaust the stack.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer; negative ones keep their sign for the error messages that refuse them.
    Int(i128),
    Str(String),
    Arr(Vec<Value>),
    /// Members in file order; a repeated key keeps its last value, as Go's decoder does.
    Obj(Vec<(String, Value)>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Obj(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

const MAX_DEPTH: usize = 32;

/// Parses one JSON document; the error names the byte offset.
pub fn parse(text: &[u8]) -> Result<Value, String> {
    let mut p = Parser { b: text, at: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.at != p.b.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn ws(&mut self) {
        while self.at < self.b.len() && matches!(self.b[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        if self.peek() != Some(c) {
            return Err(self.err(&format!("expected '{}'", c as char)));
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'{') => {
                self.at += 1;
                let mut m = Vec::new();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Value::Obj(m));
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a member name"));
                    }
                    let k = self.string()?;
                    self.eat(b':')?;
                    m.push((k, self.value(depth + 1)?));
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Value::Obj(m));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut a = Vec::new();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Value::Arr(a));
                }
                loop {
                    a.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::Arr(a));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, v) in [
                    (&b"true"[..], Value::Bool(true)),
                    (b"false", Value::Bool(false)),
                    (b"null", Value::Null),
                ] {
                    if self.b[self.at..].starts_with(word) {
                        self.at += word.len();
                        return Ok(v);
                    }
                }
                Err(self.err("unexpected character"))
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        if self.b[self.at] == b'-' {
            self.at += 1;
        }
        let digits = self.at;
        while self.at < self.b.len() && self.b[self.at].is_ascii_digit() {
            self.at += 1;
        }
        let n = self.at - digits;
        if n == 0 || (n > 1 && self.b[digits] == b'0') {
            return Err(self.err("bad number"));
        }
        if matches!(self.b.get(self.at), Some(b'.' | b'e' | b'E')) {
            return Err(self.err("not an integer"));
        }
        // At most 20 digits: every u64 fits, and i128 cannot overflow.
        if n > 20 {
            return Err(self.err("number too large"));
        }
        let text = std::str::from_utf8(&self.b[start..self.at]).unwrap_or("x");
        text.parse()
            .map(Value::Int)
            .map_err(|_| self.err("bad number"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.at += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.at) else {
                return Err(self.err("unterminated string"));
            };
            self.at += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.b.get(self.at) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi)
                                && self.b[self.at..].starts_with(b"\\u")
                            {
                                self.at += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("bad \\u escape"))?
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.err("control character in a string")),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_profile_uses() {
        let v = parse(br#" {"a": [1, -2, "x\n\u00e9\ud83d\ude00"], "b": {"c": null, "d": true}, "a": false} "#)
            .unwrap();
        assert_eq!(v.get("a"), Some(&Value::Bool(false)));
        assert_eq!(
            v.get("b").and_then(|b| b.get("d")),
            Some(&Value::Bool(true))
        );
        let Value::Obj(m) = &v else { panic!() };
        assert_eq!(
            m[0].1,
            Value::Arr(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Str("x\né😀".into())
            ])
        );
        assert_eq!(
            parse(b"18446744073709551615").unwrap(),
            Value::Int(u64::MAX as i128)
        );
    }

    #[test]
    fn refuses_malformed_documents_naming_the_offset() {
        for (doc, want) in [
            (&b"{"[..], "expected a member name at byte 1"),
            (b"{\"a\" 1}", "expected ':' at byte 5"),
            (b"[1,]", "unexpected character at byte 3"),
            (b"[1] x", "trailing characters at byte 4"),
            (b"1.5", "not an integer at byte 1"),
            (b"01", "bad number at byte 2"),
            (b"\"abc", "unterminated string at byte 4"),
            (b"\"\\q\"", "bad escape at byte 3"),
            (b"123456789012345678901", "number too large at byte 21"),
        ] {
            assert_eq!(
                parse(doc).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(doc)
            );
        }
        let deep = "[".repeat(100);
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .starts_with("nested too deeply"));
    }
}
