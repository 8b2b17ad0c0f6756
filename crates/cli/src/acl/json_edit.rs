//! Textual insertion of one ACL rule into a model JSON file.
//!
//! Model files are written by people and by LoopBack's generators, and diffs of them are
//! reviewed: re-serializing the whole file would reorder nothing with `preserve_order`, but
//! it would still rewrite number formats, escapes, blank lines and indentation. So the file
//! is scanned just enough to find the root object's `acls` member (or where one would go),
//! and the new rule is inserted there as text, formatted with the file's own indentation
//! and line endings. Every other byte is left as it was.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// The value of one field of the new rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Str(String),
    List(Vec<String>),
}

/// The file after the insertion, and the new rule's index in the model's `acls` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    pub text: String,
    pub index: usize,
}

/// Appends the rule made of `fields` (in this key order) to the root object's `acls`
/// array, adding the array before the closing brace when the file has none.
pub fn insert_acl(text: &str, fields: &[(&str, Field)]) -> Result<Inserted> {
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut scanner = Scanner::new(text);
    scanner.ws();
    let root_start = scanner.pos;
    let members = scanner.object()?;
    let root_end = scanner.pos;
    scanner.ws();
    if scanner.pos != text.len() {
        bail!("unexpected text after the model definition's closing brace");
    }
    let unit = indent_unit(text, &members);

    // JSON.parse keeps the last of duplicate keys, and so does LoopBack.
    let acls = members.iter().rev().find(|m| m.key == "acls");
    let (at, remove_to, insertion, index) = match acls {
        Some(member) => {
            let (vs, ve) = member.value;
            match text.as_bytes().get(vs) {
                Some(b'[') => {}
                _ if &text[vs..ve] == "null" => bail!(
                    "`acls` is null in this file, which discards the base model's rules; \
                     adding a rule there would bring them back, so edit it by hand"
                ),
                _ => bail!("`acls` is not an array"),
            }
            let mut inner = Scanner::new(text);
            inner.pos = vs;
            let elements = inner.array()?;
            match elements.last() {
                Some(&(ls, le)) => {
                    let obj_multi = text[ls..le].contains('\n');
                    let insertion = match indent_at(text, ls) {
                        // One element per line: the new one goes on its own line too.
                        Some(elem_indent) => {
                            let obj = if obj_multi {
                                render_multi(fields, elem_indent, &unit, nl)
                            } else {
                                render_inline(fields)
                            };
                            format!(",{nl}{elem_indent}{obj}")
                        }
                        // `[{` … `}, {` … `}]`: continue on the line the last one ends on.
                        None if obj_multi => {
                            let base = line_indent(text, le.saturating_sub(1));
                            format!(", {}", render_multi(fields, base, &unit, nl))
                        }
                        None => format!(", {}", render_inline(fields)),
                    };
                    (le, le, insertion, elements.len())
                }
                None => {
                    // `[]` or `[ ]`: the interior is replaced.
                    let insertion = match indent_at(text, member.key_start) {
                        Some(key_indent) => {
                            let base = format!("{key_indent}{unit}");
                            format!(
                                "{nl}{base}{}{nl}{key_indent}",
                                render_multi(fields, &base, &unit, nl)
                            )
                        }
                        None => render_inline(fields),
                    };
                    (vs + 1, ve - 1, insertion, 0)
                }
            }
        }
        None => match members.last() {
            Some(last) => {
                let insertion = match indent_at(text, last.key_start) {
                    Some(key_indent) => {
                        let base = format!("{key_indent}{unit}");
                        format!(
                            ",{nl}{key_indent}\"acls\": [{nl}{base}{}{nl}{key_indent}]",
                            render_multi(fields, &base, &unit, nl)
                        )
                    }
                    None => format!(", \"acls\": [{}]", render_inline(fields)),
                };
                (last.value.1, last.value.1, insertion, 0)
            }
            None => {
                let base = format!("{unit}{unit}");
                let insertion = format!(
                    "{nl}{unit}\"acls\": [{nl}{base}{}{nl}{unit}]{nl}",
                    render_multi(fields, &base, &unit, nl)
                );
                (root_start + 1, root_end - 1, insertion, 0)
            }
        },
    };
    let mut out = String::with_capacity(text.len() + insertion.len());
    out.push_str(&text[..at]);
    out.push_str(&insertion);
    out.push_str(&text[remove_to..]);
    verify(&out, fields, index)?;
    Ok(Inserted { text: out, index })
}

/// Checks that the edited text parses and holds exactly the new rule at `index`: the
/// insertion is hand-made text, so it is checked before anything is written.
fn verify(text: &str, fields: &[(&str, Field)], index: usize) -> Result<()> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| anyhow!("internal error: the edited file is not valid JSON ({e})"))?;
    let expected: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Field::Str(s) => Value::String(s.clone()),
                Field::List(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
            };
            ((*k).to_string(), v)
        })
        .collect();
    let found = value
        .get("acls")
        .and_then(Value::as_array)
        .and_then(|a| a.get(index).map(|v| (v, a.len())));
    match found {
        Some((Value::Object(obj), len)) if *obj == expected && len == index + 1 => Ok(()),
        _ => bail!("internal error: the edited file does not end its `acls` with the new rule"),
    }
}

fn json_str(s: &str) -> String {
    // Serializing a string cannot fail; fall back to a debug form just in case.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// `{` + one field per line + `}`, the closing brace at `base`, fields one `unit` deeper.
fn render_multi(fields: &[(&str, Field)], base: &str, unit: &str, nl: &str) -> String {
    let inner = format!("{base}{unit}");
    let mut s = String::from("{");
    let last = fields.len().saturating_sub(1);
    for (i, (key, value)) in fields.iter().enumerate() {
        s.push_str(nl);
        s.push_str(&inner);
        s.push_str(&json_str(key));
        s.push_str(": ");
        match value {
            Field::Str(v) => s.push_str(&json_str(v)),
            Field::List(items) => {
                s.push('[');
                let last_item = items.len().saturating_sub(1);
                for (j, item) in items.iter().enumerate() {
                    s.push_str(nl);
                    s.push_str(&inner);
                    s.push_str(unit);
                    s.push_str(&json_str(item));
                    if j < last_item {
                        s.push(',');
                    }
                }
                if !items.is_empty() {
                    s.push_str(nl);
                    s.push_str(&inner);
                }
                s.push(']');
            }
        }
        if i < last {
            s.push(',');
        }
    }
    s.push_str(nl);
    s.push_str(base);
    s.push('}');
    s
}

fn render_inline(fields: &[(&str, Field)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(key, value)| {
            let v = match value {
                Field::Str(v) => json_str(v),
                Field::List(items) => format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|i| json_str(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            format!("{}: {v}", json_str(key))
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// The whitespace before `pos` when `pos` is the first non-blank character of its line.
fn indent_at(text: &str, pos: usize) -> Option<&str> {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[start..pos];
    prefix
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
        .then_some(prefix)
}

/// The leading whitespace of the line holding `pos`.
fn line_indent(text: &str, pos: usize) -> &str {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    let len = line
        .bytes()
        .take_while(|&b| b == b' ' || b == b'\t')
        .count();
    &line[..len]
}

/// One indentation step: how far the root's keys are indented (JSON.stringify and the
/// generators indent them by exactly one step), else two spaces.
fn indent_unit(text: &str, members: &[Member]) -> String {
    members
        .iter()
        .find_map(|m| indent_at(text, m.key_start).filter(|i| !i.is_empty()))
        .unwrap_or("  ")
        .to_string()
}

/// A member of the root object: its decoded key and where its key and value are.
#[derive(Debug)]
struct Member {
    key: String,
    key_start: usize,
    /// Byte range of the value.
    value: (usize, usize),
}

/// Just enough of a JSON reader to find byte ranges. Only called on files the loader has
/// already parsed, so it is lenient about scalars.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            bail!(
                "not a JSON file this tool understands: expected `{}` at byte {}",
                c as char,
                self.pos
            )
        }
    }

    fn string(&mut self) -> Result<(usize, usize)> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.peek() {
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos));
                }
                Some(_) => self.pos += 1,
                None => bail!("unterminated string starting at byte {start}"),
            }
        }
    }

    /// Skips one value; returns its byte range.
    fn value(&mut self) -> Result<(usize, usize)> {
        self.ws();
        let start = self.pos;
        match self.peek() {
            Some(b'{') => {
                self.object()?;
            }
            Some(b'[') => {
                self.array()?;
            }
            Some(b'"') => {
                self.string()?;
            }
            _ => {
                while matches!(self.peek(), Some(c) if !b",]} \t\r\n".contains(&c)) {
                    self.pos += 1;
                }
                if self.pos == start {
                    bail!("expected a JSON value at byte {start}");
                }
            }
        }
        Ok((start, self.pos))
    }

    fn object(&mut self) -> Result<Vec<Member>> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(members);
        }
        loop {
            self.ws();
            let (ks, ke) = self.string()?;
            let key: String = serde_json::from_str(&self.text[ks..ke])
                .map_err(|e| anyhow!("bad key at byte {ks}: {e}"))?;
            self.ws();
            self.expect(b':')?;
            let value = self.value()?;
            members.push(Member {
                key,
                key_start: ks,
                value,
            });
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(members);
                }
                _ => bail!("expected `,` or `}}` at byte {}", self.pos),
            }
        }
    }

    /// Skips an array; returns the byte range of each element.
    fn array(&mut self) -> Result<Vec<(usize, usize)>> {
        self.expect(b'[')?;
        let mut elements = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(elements);
        }
        loop {
            elements.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(elements);
                }
                _ => bail!("expected `,` or `]` at byte {}", self.pos),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rule() -> Vec<(&'static str, Field)> {
        vec![
            ("accessType", Field::Str("*".into())),
            ("principalType", Field::Str("ROLE".into())),
            ("principalId", Field::Str("$owner".into())),
            ("permission", Field::Str("ALLOW".into())),
            ("property", Field::List(vec!["a".into(), "b".into()])),
        ]
    }

    const RULE_2: &str = "{\n  \"accessType\": \"*\",\n  \"principalType\": \"ROLE\",\n  \"principalId\": \"$owner\",\n  \"permission\": \"ALLOW\",\n  \"property\": [\n    \"a\",\n    \"b\"\n  ]\n}";

    fn indented(block: &str, by: &str) -> String {
        block.replace('\n', &format!("\n{by}"))
    }

    #[test]
    fn appends_after_the_last_rule_at_its_indentation() {
        let text = "{\n  \"name\": \"X\",\n  \"acls\": [\n    {\n      \"principalId\": \"$everyone\"\n    }\n  ],\n  \"methods\": {}\n}\n";
        let out = insert_acl(text, &rule()).unwrap();
        assert_eq!(out.index, 1);
        let expected = text.replacen(
            "\n    }\n  ],",
            &format!("\n    }},\n    {}\n  ],", indented(RULE_2, "    ")),
            1,
        );
        assert_eq!(out.text, expected);
    }

    #[test]
    fn fills_an_empty_array() {
        let text = "{\n  \"name\": \"X\",\n  \"acls\": [],\n  \"methods\": {}\n}";
        let out = insert_acl(text, &rule()).unwrap();
        assert_eq!(out.index, 0);
        let expected = text.replacen(
            "[]",
            &format!("[\n    {}\n  ]", indented(RULE_2, "    ")),
            1,
        );
        assert_eq!(out.text, expected);
    }

    #[test]
    fn adds_the_key_before_the_closing_brace_with_tabs_and_crlf() {
        let text = "{\r\n\t\"name\": \"X\",\r\n\t\"methods\": {}\r\n}\r\n";
        let out = insert_acl(text, &rule()).unwrap();
        let rule = indented(&RULE_2.replace("  ", "\t"), "\t\t").replace('\n', "\r\n");
        let expected = text.replacen(
            "{}\r\n}",
            &format!("{{}},\r\n\t\"acls\": [\r\n\t\t{rule}\r\n\t]\r\n}}"),
            1,
        );
        assert_eq!(out.text, expected);
    }

    #[test]
    fn keeps_inline_and_bracket_brace_styles() {
        let text = r#"{"name": "X", "acls": [{"principalId": "$everyone"}]}"#;
        let out = insert_acl(text, &rule()).unwrap();
        assert!(out.text.contains(
            r#"[{"principalId": "$everyone"}, {"accessType": "*", "principalType": "ROLE", "principalId": "$owner", "permission": "ALLOW", "property": ["a", "b"]}]"#
        ));
        let text = "{\n  \"acls\": [{\n    \"principalId\": \"$everyone\"\n  }]\n}";
        let out = insert_acl(text, &rule()).unwrap();
        assert!(out.text.starts_with(
            "{\n  \"acls\": [{\n    \"principalId\": \"$everyone\"\n  }, {\n    \"accessType\""
        ));
        assert!(out.text.ends_with("\n    ]\n  }]\n}"));
    }

    #[test]
    fn refuses_null_and_non_arrays() {
        assert!(insert_acl("{\"acls\": null}", &rule()).is_err());
        assert!(insert_acl("{\"acls\": {}}", &rule()).is_err());
        assert!(insert_acl("{\"acls\": []} x", &rule()).is_err());
    }

    #[test]
    fn empty_object_gets_the_key() {
        let out = insert_acl("{}", &rule()).unwrap();
        let v: Value = serde_json::from_str(&out.text).unwrap();
        assert_eq!(v["acls"][0]["principalId"], "$owner");
    }
}
