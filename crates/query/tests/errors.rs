//! Every refused input returns a 400 with the expected message (and never panics).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use portcullis_query::{coerce_id, parse_where, Scalar};
use serde_json::{json, Value};

enum Input {
    Json(Value),
    Qs(&'static str),
}
use Input::{Json, Qs};

fn message(model: portcullis_schema::ModelId, input: &Input) -> portcullis_query::QueryError {
    let value = match input {
        Json(v) => v.clone(),
        Qs(raw) => qs_filter(raw),
    };
    match filter(model, value.clone()) {
        Ok(f) => panic!("{value} was accepted: {f:?}"),
        Err(e) => {
            assert_eq!(e.status(), 400);
            e
        }
    }
}

#[test]
fn refused_filters() {
    let deep = {
        let mut v = json!(1);
        for _ in 0..12 {
            v = json!({ "and": [v] });
        }
        v
    };
    let cases: Vec<(Input, &str)> = vec![
        (Json(json!(5)), "Value is not an object."),
        (Json(json!("abc")), "Value is not an object."),
        (Json(json!([])), "Value is not an object."),
        // limit / skip
        (Json(json!({"limit": -1})), "The limit parameter -1 is not valid"),
        (Qs("filter[limit]=-1"), "The limit parameter \"-1\" is not valid"),
        (Json(json!({"limit": 0})), "The limit parameter 0 is not valid"),
        (Json(json!({"limit": 1.5})), "The limit parameter 1.5 is not valid"),
        (Json(json!({"limit": "abc"})), "The limit parameter \"abc\" is not valid"),
        (Json(json!({"limit": true})), "The limit parameter true is not valid"),
        (Json(json!({"limit": [5]})), "The limit parameter [5] is not valid"),
        (Json(json!({"limit": 1_000_000_001})), "The limit parameter 1000000001 is not valid"),
        (Json(json!({"limit": 1e300})), "The limit parameter 1e+300 is not valid"),
        (Qs("filter[skip]=x"), "The offset/skip parameter \"x\" is not valid"),
        (Json(json!({"skip": -3})), "The offset/skip parameter -3 is not valid"),
        (Json(json!({"offset": "2.5"})), "The offset/skip parameter \"2.5\" is not valid"),
        (Json(json!({"skip": 2_000_000_000u64})), "The offset/skip parameter 2000000000 is not valid"),
        // order
        (Json(json!({"order": "qty DOWN"})), "The order \"qty DOWN\" has invalid direction"),
        (Qs("filter[order]=qty%20DOWN"), "The order \"qty DOWN\" has invalid direction"),
        (Json(json!({"order": "qty desc extra"})), "The order \"qty desc extra\" has invalid direction"),
        (Json(json!({"order": 5})), "The order 5 is not valid"),
        (Json(json!({"order": ["qty", 5]})), "The order 5 is not valid"),
        (Json(json!({"order": {"qty": "desc"}})), "The order {\"qty\":\"desc\"} is not valid"),
        (Json(json!({"order": "nope"})), "Property \"nope\" is not defined for Item model"),
        (Json(json!({"order": "secret"})), "The secret property is hidden and cannot be used in order"),
        (Json(json!({"order": "creator"})), "Relation \"creator\" of Item model cannot be used in order"),
        // fields
        (Json(json!({"fields": ["nope"]})), "Property \"nope\" is not defined for Item model"),
        (Json(json!({"fields": {"nope": true}})), "Property \"nope\" is not defined for Item model"),
        (Json(json!({"fields": [1]})), "The fields parameter [1] is not valid"),
        (Json(json!({"fields": 1})), "The fields parameter 1 is not valid"),
        // include
        (Json(json!({"include": "nope"})), "Relation \"nope\" is not defined for Item model"),
        (Qs("filter[include][nope]"), "Relation \"nope\" is not defined for Item model"),
        (Json(json!({"include": {"notes": "nope"}})), "Relation \"nope\" is not defined for Note model"),
        (Json(json!({"include": {"notes": "false"}})), "Relation \"false\" is not defined for Note model"),
        (Json(json!({"include": 5})), "The include 5 is not valid"),
        (
            Json(json!({"include": {"relation": "notes", "scope": 5}})),
            "The scope of relation \"notes\" is not an object: 5",
        ),
        (
            Json(json!({"include": {"relation": "notes", "scope": {"where": {"item": 1}}}})),
            "Relation \"item\" of Note model cannot be used in where",
        ),
        (
            Json(json!({"include": {"notes": {"item": {"notes": {"item": {"creator": "items"}}}}}})),
            "The include nesting exceeds maximum depth 5",
        ),
        // where: structure
        (Json(json!({"where": 5})), "The where clause 5 is not an object"),
        (Json(json!({"where": [1]})), "The where clause [1] is not an object"),
        (
            Json(json!({"where": {"and": {"a": 1}}})),
            "The and operator has invalid clauses {\"a\":1}: Value is not an array or object with sequential numeric indices",
        ),
        (
            Json(json!({"where": {"or": "x"}})),
            "The or operator has invalid clauses \"x\": Value is not an array or object with sequential numeric indices",
        ),
        (
            Json(json!({"where": {"or": {"0": {}, "2": {}}}})),
            "The or operator has invalid clauses {\"0\":{},\"2\":{}}: Value is not an array or object with sequential numeric indices",
        ),
        (Json(json!({"where": {"and": [5]}})), "The and operator has invalid clauses [5]: Clause is not an object"),
        (Json(json!({"where": {"nor": [{"qty": 1}]}})), "The nor operator is not supported"),
        // where: properties
        (Json(json!({"where": {"nope": 1}})), "Property \"nope\" is not defined for Item model"),
        (Json(json!({"where": {"secret": "x"}})), "The secret property is hidden and cannot be used in where"),
        (Qs("filter[where][secret]=x"), "The secret property is hidden and cannot be used in where"),
        (Json(json!({"where": {"creator": 1}})), "Relation \"creator\" of Item model cannot be used in where"),
        (Json(json!({"where": {"meta.a": 1}})), "Nested property \"meta.a\" cannot be used in where"),
        (
            Qs("filter[where][or][0][and][0][qty][gt]=1"),
            "Property \"[qty][gt]\" is not defined for Item model (query strings nest at most 5 levels; send deeper filters as JSON)",
        ),
        // where: operators
        (
            Json(json!({"where": {"qty": {"foo": 1}}})),
            "The qty property has invalid clause {\"foo\":1}: Unknown operator \"foo\"",
        ),
        (
            Json(json!({"where": {"qty": {"gt": 1, "lt": 5}}})),
            "The qty property has invalid clause {\"gt\":1,\"lt\":5}: Expected exactly one operator",
        ),
        (Json(json!({"where": {"qty": {}}})), "The qty property has invalid clause {}: Expected an operator"),
        (
            Json(json!({"where": {"qty": [1, 2]}})),
            "The qty property has invalid clause [1,2]: Expected a value or an operator object",
        ),
        (
            Qs("filter[where][qty][inq]=3"),
            "The qty property has invalid clause {\"inq\":\"3\"}: Value is not an array or object with sequential numeric indices",
        ),
        (
            Json(json!({"where": {"qty": {"nin": 3}}})),
            "The qty property has invalid clause {\"nin\":3}: Value is not an array or object with sequential numeric indices",
        ),
        (
            Json(json!({"where": {"qty": {"between": [1]}}})),
            "The qty property has invalid clause {\"between\":[1]}: Expected precisely 2 values, received 1",
        ),
        (
            Json(json!({"where": {"qty": {"between": [1, 2, 3]}}})),
            "The qty property has invalid clause {\"between\":[1,2,3]}: Expected precisely 2 values, received 3",
        ),
        (
            Json(json!({"where": {"name": {"like": 5}}})),
            "The name property has invalid clause {\"like\":5}: Expected a string or RegExp",
        ),
        (
            Json(json!({"where": {"name": {"regexp": "("}}})),
            "The name property has invalid clause {\"regexp\":\"(\"}: Invalid regular expression",
        ),
        (
            Json(json!({"where": {"name": {"regexp": "(?=a)"}}})),
            "The name property has invalid clause {\"regexp\":\"(?=a)\"}: Invalid regular expression",
        ),
        (
            Json(json!({"where": {"name": {"regexp": "/a/x"}}})),
            "The name property has invalid clause {\"regexp\":\"/a/x\"}: Invalid regex flags: x",
        ),
        (
            Json(json!({"where": {"name": {"regexp": "a{1000}{1000}"}}})),
            "The name property has invalid clause {\"regexp\":\"a{1000}{1000}\"}: Invalid regular expression",
        ),
        (
            Json(json!({"where": {"name": {"eq": "a", "options": "i"}}})),
            "The name property has invalid clause {\"eq\":\"a\",\"options\":\"i\"}: The options key only applies to like and regexp",
        ),
        (
            Json(json!({"where": {"name": {"like": "a", "options": 1}}})),
            "The name property has invalid clause {\"like\":\"a\",\"options\":1}: Expected options to be a string",
        ),
        (
            Json(json!({"where": {"qty": {"near": [1, 2]}}})),
            "The qty property has invalid clause {\"near\":[1,2]}: The near operator is not supported",
        ),
        (Json(json!({"where": {"created": "yesterday"}})), "Invalid date: yesterday"),
        (Qs("filter[where][created][gt]=2000-13-01"), "Invalid date: 2000-13-01"),
        (Json(json!({"where": {"created": {"inq": ["2000-01-01", "x"]}}})), "Invalid date: x"),
        (Json(json!({"where": {"qty": {"gt": {"a": 1}}}})), "Invalid number value: {\"a\":1}"),
        // depth
        (Json(json!({"where": deep})), "The query object exceeds maximum depth 12"),
    ];
    for (input, expected) in &cases {
        let e = message(item(), input);
        assert_eq!(e.message, *expected);
    }
}

#[test]
fn long_patterns_are_refused() {
    let long = "a".repeat(1001);
    for op in ["like", "regexp"] {
        let e = message(item(), &Json(json!({"where": {"name": {op: long}}})));
        assert!(
            e.message
                .ends_with("The pattern is longer than 1000 characters"),
            "{}",
            e.message
        );
        // Client input echoed in messages is cut short.
        assert!(e.message.len() < 400, "{}", e.message.len());
    }
    assert!(filter(
        item(),
        json!({"where": {"name": {"like": "a".repeat(1000)}}})
    )
    .is_ok());
}

#[test]
fn codes_and_details() {
    let e = message(
        item(),
        &Json(json!({"where": {"qty": {"$gt": 5}, "or": [{"name": {"$ne": 1}}]}})),
    );
    assert_eq!(e.message, "Operators \"$gt, $ne\" are not allowed in query");
    assert_eq!(e.code, Some("OPERATOR_NOT_ALLOWED_IN_QUERY"));
    assert_eq!(
        e.details,
        Some(json!({
            "operators": ["$gt", "$ne"],
            "where": {"qty": {"$gt": 5}, "or": [{"name": {"$ne": 1}}]}
        }))
    );
    let e = message(item(), &Qs("filter[where][qty][$gt]=5"));
    assert_eq!(e.message, "Operators \"$gt\" are not allowed in query");
    assert_eq!(e.code, Some("OPERATOR_NOT_ALLOWED_IN_QUERY"));

    let e = message(item(), &Json(json!({"where": {"$where": "1"}})));
    assert_eq!(e.code, Some("OPERATOR_NOT_ALLOWED_IN_QUERY"));

    // Twelve levels below the filter are allowed, thirteen are not.
    let nest = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "x": v });
        }
        v
    };
    assert!(filter(note(), json!({"foo": nest(11)})).is_ok());
    let e = message(note(), &Json(json!({"foo": nest(12)})));
    assert_eq!(e.code, Some("QUERY_OBJECT_TOO_DEEP"));
    assert_eq!(e.message, "The query object exceeds maximum depth 12");
    // `parse_where` applies the same limit from the where object.
    assert!(parse_where(app(), note(), &json!({"mood": {"eq": nest(10)}})).is_ok());
    let e = parse_where(app(), note(), &json!({"mood": {"eq": nest(11)}})).unwrap_err();
    assert_eq!(e.code, Some("QUERY_OBJECT_TOO_DEEP"));
}

#[test]
fn loose_model_names_must_be_identifiers() {
    for name in ["a b", "a'b", "", "a[b]"] {
        let e = parse_where(app(), note(), &json!({ name: 1 })).unwrap_err();
        assert!(
            e.message
                .starts_with(&format!("Property name \"{name}\" is not valid")),
            "{}",
            e.message
        );
    }
    // Unknown names in `fields` are ignored on loose models.
    assert_eq!(
        filter(note(), json!({"fields": ["nope"]})).unwrap().fields,
        None
    );
}

#[test]
fn path_ids() {
    let item = app().model(item());
    assert_eq!(coerce_id(item, "42"), Some(Scalar::Int(42)));
    assert_eq!(coerce_id(item, "abc"), None);
    assert_eq!(coerce_id(item, ""), None);
    let person = app().model(person());
    assert_eq!(coerce_id(person, "7"), Some(Scalar::Int(7)));
}
