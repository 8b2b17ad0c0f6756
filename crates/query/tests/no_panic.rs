//! Arbitrary input never panics: JSON values fed to `parse_filter` / `parse_where`, and
//! strings fed to the query-string decoder, the date parser and the object-argument rule.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use portcullis_query::{
    coerce_id, coerce_scalar, format_date, object_arg, parse_date, parse_filter,
    parse_query_string, parse_where,
};
use portcullis_schema::PropType;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys that reach deep into the parser, mixed with arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "where", "order", "limit", "skip", "offset", "fields", "include", "relation", "rel", "scope",
            "and", "or", "nor", "eq", "neq", "gt", "gte", "lt", "lte", "between", "inq", "nin", "like",
            "nlike", "ilike", "nilike", "regexp", "options", "near", "$gt", "name", "qty", "price",
            "active", "created", "tags", "meta", "secret", "creator", "notes", "item", "privateNotes",
            "body", "itemId", "0", "1", "2", "id",
        ])
        .prop_map(String::from),
        1 => ".{0,8}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "0",
            "1",
            "-1",
            "10",
            "1e400",
            "true",
            "false",
            "qty desc",
            "qty DOWN",
            "name",
            "creator",
            "notes",
            "2000-01-01",
            "2000-01-01T05:00:00.000Z",
            "/a/i",
            "(",
            "%a_",
            "null",
            "{",
            "[1]",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(8, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn query_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "filter",
            "[where]",
            "[and]",
            "[or]",
            "[0]",
            "[1]",
            "[21]",
            "[]",
            "[qty]",
            "[gt]",
            "[inq]",
            "[include]",
            "[order]",
            "[limit]",
            "[fields]",
            "[scope]",
            "[relation]",
            "=",
            "&",
            "%",
            "%4",
            "%41",
            "%FF",
            "+",
            "[",
            "]",
            "5",
            "abc",
            "creator",
            "__proto__",
            "[$gt]",
        ])
        .prop_map(String::from),
        ".{0,4}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn filters_never_panic(value in json()) {
        for model in [item(), note(), person()] {
            let _ = parse_filter(app(), model, &value);
            let _ = parse_where(app(), model, &value);
            let wrapped = serde_json::json!({ "where": value.clone(), "include": value.clone(), "order": value.clone() });
            let _ = parse_filter(app(), model, &wrapped);
        }
        let _ = object_arg(Some(&value));
        for ty in [PropType::String, PropType::Number, PropType::Boolean, PropType::Date, PropType::Object, PropType::Any] {
            let _ = coerce_scalar(&value, &ty);
        }
    }

    #[test]
    fn query_strings_never_panic(raw in query_string()) {
        let map = parse_query_string(&raw);
        if let Some(f) = map.get("filter") {
            let _ = parse_filter(app(), item(), f);
            let _ = parse_filter(app(), note(), f);
        }
        let _ = parse_filter(app(), item(), &Value::Object(map));
    }

    #[test]
    fn arbitrary_strings_never_panic(raw in any::<String>()) {
        let _ = parse_query_string(&raw);
        let _ = parse_date(&raw);
        let _ = coerce_id(app().model(item()), &raw);
        let _ = object_arg(Some(&Value::String(raw.clone())));
        let _ = parse_where(app(), item(), &serde_json::json!({ "name": { "regexp": raw.clone() } }));
    }

    #[test]
    fn dates_round_trip(millis in -8_640_000_000_000_000i64..=8_640_000_000_000_000i64) {
        prop_assert_eq!(parse_date(&format_date(millis)), Some(millis));
    }

    #[test]
    fn format_date_is_total(millis in any::<i64>()) {
        let _ = format_date(millis);
    }
}
