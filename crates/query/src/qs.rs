//! Query-string decoding with the semantics of Node's `qs` (v6) as Express 4 configures it
//! (`allowPrototypes: true`, every other option at its default). LoopBack clients send
//! filters as `filter[where][qty][gt]=5`, so the exact shape `qs` builds — arrays versus
//! objects, the depth cut-off, duplicate keys — decides what a filter means.
//!
//! The decoder works in two passes, like `qs`: split into flat `key → value` pairs
//! (combining duplicates into arrays), then turn each key's bracket chain into a nested
//! value and deep-merge it into the result with `qs`'s own merge rules. Work is bounded:
//! at most [`PARAMETER_LIMIT`] pairs are read and bracket chains are at most [`DEPTH`] deep.

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// `qs`'s `parameterLimit`: pairs after the 1000th are ignored.
pub const PARAMETER_LIMIT: usize = 1000;
/// `qs`'s `depth`: brackets after the fifth collapse into one literal key.
pub const DEPTH: usize = 5;
/// `qs`'s `arrayLimit`: a bracketed index above this becomes an object key.
pub const ARRAY_LIMIT: usize = 20;

/// A value while `qs` is building it. Arrays may have holes (`a[1]=x` alone), which `qs`
/// removes at the end (`compact`).
#[derive(Debug, Clone, PartialEq)]
enum Qv {
    Str(String),
    /// Produced when a plain value is merged into an object (`a[b]=1&a=c` gives
    /// `{"a":{"b":"1","c":true}}`), exactly as `qs` does.
    True,
    Arr(Vec<Option<Qv>>),
    Obj(IndexMap<String, Qv>),
}

impl Qv {
    fn is_container(&self) -> bool {
        matches!(self, Qv::Arr(_) | Qv::Obj(_))
    }
}

/// Parses a raw query string (without the leading `?`) the way Express's `qs` does.
///
/// `a[b][c]=1` nests; `a=1&a=2` and `a[]=1` make arrays; `a[0]=x&a[1]=y` makes an array
/// (indices up to 20, above that object keys); `+` is a space; percent-escapes are decoded
/// (invalid UTF-8 is replaced); a key without `=` gets `""`. Never fails.
pub fn parse_query_string(raw: &str) -> Map<String, Value> {
    // Pass 1: flat pairs, duplicates combined (`utils.combine`).
    let mut flat: IndexMap<String, Qv> = IndexMap::new();
    for part in raw.split('&').take(PARAMETER_LIMIT) {
        // `qs` splits at `]=` first, so `a[b=c]=d` keeps `b=c` inside the key.
        let pos = match part.find("]=") {
            Some(p) => Some(p + 1),
            None => part.find('='),
        };
        let (key, val) = match pos {
            None => (decode(part), String::new()),
            Some(p) => (decode(&part[..p]), decode(&part[p + 1..])),
        };
        match flat.get_mut(&key) {
            Some(existing) => {
                let old = std::mem::replace(existing, Qv::True);
                *existing = match old {
                    Qv::Arr(mut items) => {
                        items.push(Some(Qv::Str(val)));
                        Qv::Arr(items)
                    }
                    other => Qv::Arr(vec![Some(other), Some(Qv::Str(val))]),
                };
            }
            None => {
                flat.insert(key, Qv::Str(val));
            }
        }
    }

    // Pass 2: expand each key and merge, in JavaScript's property order for the flat object.
    let mut result = Qv::Obj(IndexMap::new());
    for (key, val) in js_order(flat) {
        let Some(chain) = split_key(&key) else {
            continue;
        };
        let nested = build(&chain, val);
        result = merge(result, nested);
    }
    match to_json(compact(result)) {
        Value::Object(map) => map,
        // The result starts as an object and merging into an object keeps it one.
        _ => Map::new(),
    }
}

/// `qs`'s decoder: `+` is a space, then percent-decoding. Where `decodeURIComponent` would
/// throw (invalid UTF-8), we decode lossily instead of keeping the escapes.
fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Splits `a[b][c]` into `["a", "[b]", "[c]"]`, as `qs`'s `parseKeys` with depth 5: after
/// the fifth bracket group, the rest of the key becomes one segment `[<rest>]`.
/// `None` for an empty key (which `qs` drops).
fn split_key(key: &str) -> Option<Vec<String>> {
    if key.is_empty() {
        return None;
    }
    let groups = bracket_groups(key);
    let parent = match groups.first() {
        Some(&(start, _)) => &key[..start],
        None => key,
    };
    let mut chain = Vec::new();
    if !parent.is_empty() {
        chain.push(parent.to_string());
    }
    for &(start, end) in groups.iter().take(DEPTH) {
        chain.push(key[start..end].to_string());
    }
    if let Some(&(start, _)) = groups.get(DEPTH) {
        chain.push(format!("[{}]", &key[start..]));
    }
    Some(chain)
}

/// Byte ranges of the matches of `/\[[^[\]]*]/g`: a `[`, no brackets, then `]`.
fn bracket_groups(key: &str) -> Vec<(usize, usize)> {
    let bytes = key.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        loop {
            match bytes.get(j) {
                None => return out,
                Some(b'[') => {
                    // No match starting at `i`; the regex retries from the next `[`.
                    i = j;
                    break;
                }
                Some(b']') => {
                    out.push((i, j + 1));
                    i = j + 1;
                    break;
                }
                Some(_) => j += 1,
            }
        }
    }
    out
}

/// `qs`'s `parseObject`: wraps the leaf value in one level per chain segment.
fn build(chain: &[String], leaf: Qv) -> Qv {
    let mut leaf = leaf;
    for root in chain.iter().rev() {
        leaf = if root == "[]" {
            // `[].concat(leaf)`
            match leaf {
                Qv::Arr(items) => Qv::Arr(items),
                other => Qv::Arr(vec![Some(other)]),
            }
        } else {
            let bracketed = root.len() >= 2 && root.starts_with('[') && root.ends_with(']');
            let clean = if bracketed {
                &root[1..root.len() - 1]
            } else {
                root.as_str()
            };
            match array_index(clean) {
                Some(index) if bracketed && index <= ARRAY_LIMIT => {
                    let mut items = vec![None; index];
                    items.push(Some(leaf));
                    Qv::Arr(items)
                }
                _ => {
                    let mut obj = IndexMap::new();
                    // `qs` refuses to write `__proto__`.
                    if clean != "__proto__" {
                        obj.insert(clean.to_string(), leaf);
                    }
                    Qv::Obj(obj)
                }
            }
        };
    }
    leaf
}

/// `String(parseInt(s, 10)) === s && index >= 0`: canonical non-negative decimal.
fn array_index(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// `qs`'s `utils.merge(target, source)`, including its quirks.
fn merge(target: Qv, source: Qv) -> Qv {
    match source {
        // `if (!source) return target;`
        Qv::Str(ref s) if s.is_empty() => target,
        Qv::Str(_) | Qv::True => match target {
            Qv::Arr(mut items) => {
                items.push(Some(source));
                Qv::Arr(items)
            }
            Qv::Obj(mut obj) => {
                let key = match source {
                    Qv::Str(s) => s,
                    _ => "true".to_string(),
                };
                if key != "__proto__" {
                    obj.insert(key, Qv::True);
                }
                Qv::Obj(obj)
            }
            other => Qv::Arr(vec![Some(other), Some(source)]),
        },
        Qv::Arr(_) | Qv::Obj(_) => match target {
            Qv::Str(_) | Qv::True => match source {
                // `[target].concat(source)`
                Qv::Arr(items) => {
                    let mut out = vec![Some(target)];
                    out.extend(items);
                    Qv::Arr(out)
                }
                other => Qv::Arr(vec![Some(target), Some(other)]),
            },
            Qv::Arr(mut items) if matches!(source, Qv::Arr(_)) => {
                let Qv::Arr(src) = source else {
                    return Qv::Arr(items);
                };
                for (i, item) in src.into_iter().enumerate() {
                    let Some(item) = item else { continue };
                    match items.get_mut(i) {
                        Some(slot @ Some(_)) => {
                            let existing = slot.take();
                            match existing {
                                Some(t) if t.is_container() && item.is_container() => {
                                    *slot = Some(merge(t, item));
                                }
                                other => {
                                    *slot = other;
                                    items.push(Some(item));
                                }
                            }
                        }
                        Some(slot) => *slot = Some(item),
                        None => {
                            items.resize(i, None);
                            items.push(Some(item));
                        }
                    }
                }
                Qv::Arr(items)
            }
            target => {
                let mut acc = match target {
                    Qv::Arr(items) => array_to_object(items),
                    Qv::Obj(obj) => obj,
                    // Handled by the arms above.
                    _ => IndexMap::new(),
                };
                let entries: Vec<(String, Qv)> = match source {
                    Qv::Obj(obj) => obj.into_iter().collect(),
                    Qv::Arr(items) => items
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| (i.to_string(), v)))
                        .collect(),
                    _ => Vec::new(),
                };
                for (key, value) in entries {
                    match acc.get_mut(&key) {
                        Some(slot) => {
                            let old = std::mem::replace(slot, Qv::True);
                            *slot = merge(old, value);
                        }
                        None => {
                            acc.insert(key, value);
                        }
                    }
                }
                Qv::Obj(acc)
            }
        },
    }
}

fn array_to_object(items: Vec<Option<Qv>>) -> IndexMap<String, Qv> {
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i.to_string(), v)))
        .collect()
}

/// Removes array holes, recursively (`utils.compact`).
fn compact(value: Qv) -> Qv {
    match value {
        Qv::Arr(items) => Qv::Arr(
            items
                .into_iter()
                .flatten()
                .map(|v| Some(compact(v)))
                .collect(),
        ),
        Qv::Obj(obj) => Qv::Obj(obj.into_iter().map(|(k, v)| (k, compact(v))).collect()),
        other => other,
    }
}

fn to_json(value: Qv) -> Value {
    match value {
        Qv::Str(s) => Value::String(s),
        Qv::True => Value::Bool(true),
        Qv::Arr(items) => Value::Array(items.into_iter().flatten().map(to_json).collect()),
        Qv::Obj(obj) => Value::Object(
            js_order(obj)
                .into_iter()
                .map(|(k, v)| (k, to_json(v)))
                .collect(),
        ),
    }
}

/// JavaScript enumerates integer-like keys first, ascending, then the others in insertion
/// order. `qs` iterates its flat object and the result's objects in that order.
fn js_order(map: IndexMap<String, Qv>) -> Vec<(String, Qv)> {
    let (mut ints, others): (Vec<_>, Vec<_>) =
        map.into_iter().partition(|(k, _)| js_index(k).is_some());
    ints.sort_by_key(|(k, _)| js_index(k));
    ints.extend(others);
    ints
}

/// A canonical array index as JavaScript orders properties (`0 ..= 2^32 - 2`).
fn js_index(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse::<u64>().ok().filter(|&n| n < u64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn qs(raw: &str) -> Value {
        Value::Object(parse_query_string(raw))
    }

    #[test]
    fn table() {
        let cases: &[(&str, Value)] = &[
            ("", json!({})),
            ("a=1", json!({"a": "1"})),
            ("a", json!({"a": ""})),
            ("a=", json!({"a": ""})),
            ("a=1&a=2", json!({"a": ["1", "2"]})),
            ("a[]=1&a[]=2", json!({"a": ["1", "2"]})),
            ("a[]=1", json!({"a": ["1"]})),
            ("a[0]=x&a[1]=y", json!({"a": ["x", "y"]})),
            ("a[1]=y&a[0]=x", json!({"a": ["x", "y"]})),
            ("a[1]=y", json!({"a": ["y"]})),
            ("a[20]=y", json!({"a": ["y"]})),
            ("a[21]=y", json!({"a": {"21": "y"}})),
            ("a[0]=x&a[21]=y", json!({"a": {"0": "x", "21": "y"}})),
            ("a[01]=x", json!({"a": {"01": "x"}})),
            ("a[-1]=x", json!({"a": {"-1": "x"}})),
            ("0=x", json!({"0": "x"})),
            ("a[b][c]=1", json!({"a": {"b": {"c": "1"}}})),
            ("a[b]=1&a[c]=2", json!({"a": {"b": "1", "c": "2"}})),
            ("a+b=c+d", json!({"a b": "c d"})),
            ("a%20b=%41%zz", json!({"a b": "A%zz"})),
            ("a=%FF", json!({"a": "\u{FFFD}"})),
            ("a[b=c]=d", json!({"a": {"b=c": "d"}})),
            ("a=b=c", json!({"a": "b=c"})),
            ("&&a=1&", json!({"a": "1"})),
            ("=x", json!({})),
            ("__proto__[a]=1", json!({})),
            ("a[__proto__]=1", json!({"a": {}})),
            ("a[b]=1&a=c", json!({"a": {"b": "1", "c": true}})),
            ("a=c&a[b]=1", json!({"a": ["c", {"b": "1"}]})),
            ("a[][b]=1", json!({"a": [{"b": "1"}]})),
            ("a[0][b]=1&a[0][c]=2", json!({"a": [{"b": "1", "c": "2"}]})),
            ("a[0]=1&a[0]=2", json!({"a": [["1", "2"]]})),
            ("[a]=1", json!({"a": "1"})),
            ("a[b", json!({"a[b": ""})),
            ("a]b=1", json!({"a]b": "1"})),
            ("a[b][c", json!({"a": {"b": ""}})),
            ("b=1&0=2", json!({"0": "2", "b": "1"})),
            (
                "a[b][c][d][e][f][g][h]=x",
                json!({"a": {"b": {"c": {"d": {"e": {"f": {"[g][h]": "x"}}}}}}}),
            ),
            (
                "a[1][2][3][4][5][6][7]=x",
                json!({"a": [[[[[{"[6][7]": "x"}]]]]]}),
            ),
            (
                "filter[where][and][0][qty][gt]=10&filter[where][and][1][qty][lt]=13",
                json!({"filter": {"where": {"and": [{"qty": {"gt": "10"}}, {"qty": {"lt": "13"}}]}}}),
            ),
            (
                "filter[where][or][0][and][0][qty][gt]=1",
                json!({"filter": {"where": {"or": [{"and": [{"[qty][gt]": "1"}]}]}}}),
            ),
            (
                "filter[include][creator]&filter[where][created][gte]=2000-01-01T05%3A00%3A00.000Z&filter[order]=created%20desc",
                json!({"filter": {
                    "include": {"creator": ""},
                    "where": {"created": {"gte": "2000-01-01T05:00:00.000Z"}},
                    "order": "created desc"
                }}),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(&qs(raw), expected, "query string {raw:?}");
        }
    }

    #[test]
    fn parameter_limit() {
        let raw: Vec<String> = (0..1500).map(|i| format!("k{i}=v")).collect();
        let map = parse_query_string(&raw.join("&"));
        assert_eq!(map.len(), PARAMETER_LIMIT);
        assert!(map.contains_key("k999"));
        assert!(!map.contains_key("k1000"));
    }

    #[test]
    fn object_key_order_is_javascripts() {
        let map = parse_query_string("a[x]=1&a[3]=2&a[25]=3&a[y]=4");
        let keys: Vec<&String> = map["a"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .collect();
        assert_eq!(keys, ["3", "25", "x", "y"]);
    }
}
