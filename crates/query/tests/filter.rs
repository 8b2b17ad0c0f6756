//! Filters in both encodings (JSON and `qs` query strings) against a loaded app.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use portcullis_query::{parse_where, Filter, Include, Op, OrderBy, Scalar, Where};
use portcullis_schema::PropType;
use serde_json::{json, Value};

fn where_item(value: Value) -> Option<Where> {
    parse_where(app(), item(), &value).unwrap_or_else(|e| panic!("{value}: {}", e.message))
}

/// Every operator, written as JSON and as the equivalent query string.
#[test]
fn operators_in_both_encodings() {
    let date = 946_702_800_000; // 2000-01-01T05:00:00.000Z
    let like = |pattern: &str, negated, case_insensitive| Op::Like {
        pattern: pattern.into(),
        negated,
        case_insensitive,
    };
    let regexp = |pattern: &str, case_insensitive| Op::Regexp {
        pattern: pattern.into(),
        case_insensitive,
    };
    let cases: Vec<(Value, &str, Where)> = vec![
        (
            json!({"qty": 5}),
            "filter[where][qty]=5",
            cond(item(), "qty", Op::Eq(int(5))),
        ),
        (
            json!({"qty": {"eq": 5}}),
            "filter[where][qty][eq]=5",
            cond(item(), "qty", Op::Eq(int(5))),
        ),
        (
            json!({"qty": {"neq": 5}}),
            "filter[where][qty][neq]=5",
            cond(item(), "qty", Op::Neq(int(5))),
        ),
        (
            json!({"qty": {"gt": 5}}),
            "filter[where][qty][gt]=5",
            cond(item(), "qty", Op::Gt(int(5))),
        ),
        (
            json!({"qty": {"gte": 5}}),
            "filter[where][qty][gte]=5",
            cond(item(), "qty", Op::Gte(int(5))),
        ),
        (
            json!({"qty": {"lt": 5.5}}),
            "filter[where][qty][lt]=5.5",
            cond(item(), "qty", Op::Lt(Scalar::Float(5.5))),
        ),
        (
            json!({"qty": {"lte": 5}}),
            "filter[where][qty][lte]=5",
            cond(item(), "qty", Op::Lte(int(5))),
        ),
        (
            json!({"qty": {"between": [1, 5]}}),
            "filter[where][qty][between][0]=1&filter[where][qty][between][1]=5",
            cond(item(), "qty", Op::Between(int(1), int(5))),
        ),
        (
            json!({"qty": {"inq": [3, 7]}}),
            "filter[where][qty][inq]=3&filter[where][qty][inq]=7",
            cond(item(), "qty", Op::Inq(vec![int(3), int(7)])),
        ),
        (
            json!({"qty": {"inq": [3, 7]}}),
            "filter[where][qty][inq][0]=3&filter[where][qty][inq][1]=7",
            cond(item(), "qty", Op::Inq(vec![int(3), int(7)])),
        ),
        (
            json!({"qty": {"nin": [3]}}),
            "filter[where][qty][nin][]=3",
            cond(item(), "qty", Op::Nin(vec![int(3)])),
        ),
        (
            json!({"name": {"like": "%ab_"}}),
            "filter[where][name][like]=%25ab_",
            cond(item(), "name", like("%ab_", false, false)),
        ),
        (
            json!({"name": {"nlike": "a%"}}),
            "filter[where][name][nlike]=a%25",
            cond(item(), "name", like("a%", true, false)),
        ),
        (
            json!({"name": {"ilike": "a%"}}),
            "filter[where][name][ilike]=a%25",
            cond(item(), "name", like("a%", false, true)),
        ),
        (
            json!({"name": {"nilike": "a%"}}),
            "filter[where][name][nilike]=a%25",
            cond(item(), "name", like("a%", true, true)),
        ),
        (
            json!({"name": {"like": "a%", "options": "i"}}),
            "filter[where][name][like]=a%25&filter[where][name][options]=i",
            cond(item(), "name", like("a%", false, true)),
        ),
        (
            json!({"name": {"regexp": "^ab"}}),
            "filter[where][name][regexp]=^ab",
            cond(item(), "name", regexp("^ab", false)),
        ),
        (
            json!({"name": {"regexp": "/ab/i"}}),
            "filter[where][name][regexp]=/ab/i",
            cond(item(), "name", regexp("ab", true)),
        ),
        (
            json!({"name": {"regexp": "/ab/gm"}}),
            "filter[where][name][regexp]=/ab/gm",
            cond(item(), "name", regexp("ab", false)),
        ),
        (
            json!({"name": {"regexp": "/a\\/b/"}}),
            "filter[where][name][regexp]=/a%5C/b/",
            cond(item(), "name", regexp("a\\/b", false)),
        ),
        (
            json!({"active": true}),
            "filter[where][active]=true",
            cond(item(), "active", Op::Eq(Scalar::Bool(true))),
        ),
        (
            json!({"active": false}),
            "filter[where][active]=0",
            cond(item(), "active", Op::Eq(Scalar::Bool(false))),
        ),
        (
            json!({"created": {"gte": "2000-01-01T05:00:00.000Z"}}),
            "filter[where][created][gte]=2000-01-01T05%3A00%3A00.000Z",
            cond(item(), "created", Op::Gte(Scalar::Date(date))),
        ),
        (
            json!({"name": "5"}),
            "filter[where][name]=5",
            cond(item(), "name", Op::Eq(text("5"))),
        ),
        (
            json!({"qty": "many"}),
            "filter[where][qty]=many",
            cond(item(), "qty", Op::Eq(text("many"))),
        ),
        (
            json!({"tags": "a"}),
            "filter[where][tags]=a",
            cond(item(), "tags", Op::Eq(Scalar::Json(json!("a")))),
        ),
        (
            json!({"and": [{"qty": {"gt": 10}}, {"qty": {"lt": 13}}]}),
            "filter[where][and][0][qty][gt]=10&filter[where][and][1][qty][lt]=13",
            Where::And(vec![
                cond(item(), "qty", Op::Gt(int(10))),
                cond(item(), "qty", Op::Lt(int(13))),
            ]),
        ),
        (
            json!({"or": [{"name": "a"}, {"qty": 1}]}),
            "filter[where][or][0][name]=a&filter[where][or][1][qty]=1",
            Where::Or(vec![
                cond(item(), "name", Op::Eq(text("a"))),
                cond(item(), "qty", Op::Eq(int(1))),
            ]),
        ),
        (
            json!({"name": "a", "qty": 1}),
            "filter[where][name]=a&filter[where][qty]=1",
            Where::And(vec![
                cond(item(), "name", Op::Eq(text("a"))),
                cond(item(), "qty", Op::Eq(int(1))),
            ]),
        ),
    ];
    for (json_where, raw, expected) in cases {
        let from_json = filter(item(), json!({ "where": json_where }))
            .unwrap_or_else(|e| panic!("{json_where}: {}", e.message));
        assert_eq!(
            from_json.where_.as_ref(),
            Some(&expected),
            "JSON {json_where}"
        );
        let from_qs =
            filter(item(), qs_filter(raw)).unwrap_or_else(|e| panic!("{raw}: {}", e.message));
        assert_eq!(
            from_qs.where_.as_ref(),
            Some(&expected),
            "query string {raw}"
        );
    }
}

#[test]
fn null_and_empty_conditions() {
    assert_eq!(where_item(json!({})), None);
    assert_eq!(where_item(json!(null)), None);
    assert_eq!(where_item(json!("")), None);
    assert_eq!(
        where_item(json!({"name": null})),
        Some(cond(item(), "name", Op::Eq(Scalar::Null)))
    );
    assert_eq!(
        where_item(json!({"name": {"neq": null}})),
        Some(cond(item(), "name", Op::Neq(Scalar::Null)))
    );
    assert_eq!(where_item(json!({"qty": {"inq": []}})), Some(Where::Never));
    assert_eq!(where_item(json!({"qty": {"nin": []}})), None);
    assert_eq!(where_item(json!({"and": []})), None);
    assert_eq!(where_item(json!({"or": []})), Some(Where::Never));
    assert_eq!(where_item(json!({"or": [{}, {"qty": 1}]})), None);
    assert_eq!(
        where_item(json!({"and": [{}, {"qty": 1}]})),
        Some(cond(item(), "qty", Op::Eq(int(1))))
    );
    assert_eq!(
        where_item(json!({"qty": 1, "name": {"inq": []}})),
        Some(Where::Never)
    );
    // `qs` turns indices above 20 into object keys; sequential numeric keys are a list.
    assert_eq!(
        where_item(json!({"or": {"1": {"qty": 2}, "0": {"qty": 1}}})),
        Some(Where::Or(vec![
            cond(item(), "qty", Op::Eq(int(1))),
            cond(item(), "qty", Op::Eq(int(2)))
        ]))
    );
    assert_eq!(
        where_item(json!({"qty": {"inq": {"0": "1", "1": "2"}}})),
        Some(cond(item(), "qty", Op::Inq(vec![int(1), int(2)])))
    );
}

#[test]
fn loose_models_accept_undeclared_properties() {
    let w = parse_where(app(), note(), &json!({"mood": {"gt": 3}, "body": "x"})).unwrap();
    assert_eq!(
        w,
        Some(Where::And(vec![
            cond(note(), "mood", Op::Gt(int(3))),
            cond(note(), "body", Op::Eq(text("x"))),
        ]))
    );
    // Values for undeclared properties keep their JSON type.
    let w = parse_where(app(), note(), &json!({"mood": "3"})).unwrap();
    assert_eq!(w, Some(cond(note(), "mood", Op::Eq(text("3")))));
    let f = filter(
        note(),
        json!({"order": "mood DESC", "fields": ["body", "mood"]}),
    )
    .unwrap();
    assert_eq!(
        f.order,
        vec![OrderBy {
            property: prop(note(), "mood"),
            descending: true
        }]
    );
    assert_eq!(f.fields, Some(vec!["body".to_string()]));
}

#[test]
fn the_seed_clients_query() {
    let raw = "filter[include][creator]&filter[where][created][gte]=2000-01-01T05%3A00%3A00.000Z&filter[order]=created%20desc";
    let f = filter(item(), qs_filter(raw)).unwrap();
    assert_eq!(
        f,
        Filter {
            where_: Some(cond(
                item(),
                "created",
                Op::Gte(Scalar::Date(946_702_800_000))
            )),
            order: vec![OrderBy {
                property: declared("created", PropType::Date),
                descending: true
            }],
            limit: None,
            skip: 0,
            fields: None,
            include: vec![Include {
                relation: "creator".into(),
                target: person(),
                scope: Filter::default()
            }],
        }
    );
}

#[test]
fn order() {
    let by = |name: &str, descending| OrderBy {
        property: prop(item(), name),
        descending,
    };
    let cases: Vec<(Value, Vec<OrderBy>)> = vec![
        (json!("qty"), vec![by("qty", false)]),
        (json!("qty ASC"), vec![by("qty", false)]),
        (json!("qty desc"), vec![by("qty", true)]),
        (json!("qty DeSc"), vec![by("qty", true)]),
        (
            json!("qty desc, name"),
            vec![by("qty", true), by("name", false)],
        ),
        (
            json!(" qty  desc ,,name asc"),
            vec![by("qty", true), by("name", false)],
        ),
        (
            json!(["qty desc", "name"]),
            vec![by("qty", true), by("name", false)],
        ),
        (json!([]), vec![]),
        (json!(null), vec![]),
        (json!("id"), vec![by("id", false)]),
    ];
    for (value, expected) in cases {
        assert_eq!(
            filter(item(), json!({"order": value})).unwrap().order,
            expected,
            "{value}"
        );
    }
    let f = filter(
        item(),
        qs_filter("filter[order][0]=qty%20desc&filter[order][1]=name"),
    )
    .unwrap();
    assert_eq!(f.order, vec![by("qty", true), by("name", false)]);
    let f = filter(item(), qs_filter("filter[order]=qty+desc")).unwrap();
    assert_eq!(f.order, vec![by("qty", true)]);
}

#[test]
fn limit_and_skip() {
    let cases: Vec<(Value, Option<u64>, u64)> = vec![
        (json!({}), None, 0),
        (json!({"limit": 10}), Some(10), 0),
        (json!({"limit": "10"}), Some(10), 0),
        (json!({"limit": 10.0}), Some(10), 0),
        (json!({"limit": null}), None, 0),
        (json!({"limit": ""}), None, 0),
        (json!({"skip": 5}), Some(100), 5),
        (json!({"offset": "5"}), Some(100), 5),
        (json!({"skip": 0, "offset": 3}), Some(100), 3),
        (json!({"skip": 0}), None, 0),
        (json!({"skip": "0"}), Some(100), 0),
        (json!({"limit": 2, "skip": 4}), Some(2), 4),
        (json!({"limit": 1_000_000_000}), Some(1_000_000_000), 0),
    ];
    for (value, limit, skip) in cases {
        let f = filter(item(), value.clone()).unwrap();
        assert_eq!((f.limit, f.skip), (limit, skip), "{value}");
    }
    let f = filter(item(), qs_filter("filter[limit]=2&filter[skip]=4")).unwrap();
    assert_eq!((f.limit, f.skip), (Some(2), 4));
}

#[test]
fn fields() {
    let names = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let all_but = |skip: &[&str]| {
        Some(
            app()
                .model(item())
                .properties
                .iter()
                .map(|p| p.name.clone())
                .filter(|n| !skip.contains(&n.as_str()))
                .collect::<Vec<_>>(),
        )
    };
    let cases: Vec<(Value, Option<Vec<String>>)> = vec![
        (json!("name"), names(&["name"])),
        (json!(["qty", "name"]), names(&["name", "qty"])),
        (json!({"qty": true, "name": true}), names(&["name", "qty"])),
        (json!({"qty": true, "name": false}), names(&["qty"])),
        (
            json!({"qty": false, "name": false}),
            all_but(&["qty", "name"]),
        ),
        (json!({"qty": 0}), all_but(&["qty"])),
        (json!([]), None),
        (json!({}), None),
        (json!(null), None),
        (json!(""), None),
    ];
    for (value, expected) in cases {
        assert_eq!(
            filter(item(), json!({"fields": value})).unwrap().fields,
            expected,
            "{value}"
        );
    }
    // From a query string every value is a non-empty string, so `false` still selects.
    let f = filter(
        item(),
        qs_filter("filter[fields][name]=false&filter[fields][qty]=0"),
    )
    .unwrap();
    assert_eq!(f.fields, names(&["name", "qty"]));
    let f = filter(item(), qs_filter("filter[fields]=name&filter[fields]=qty")).unwrap();
    assert_eq!(f.fields, names(&["name", "qty"]));
    let f = filter(item(), qs_filter("filter[fields]=name")).unwrap();
    assert_eq!(f.fields, names(&["name"]));
}

#[test]
fn include_shapes() {
    let inc = |relation: &str, target, scope: Filter| Include {
        relation: relation.into(),
        target,
        scope,
    };
    let notes_with_item = || {
        inc(
            "notes",
            note(),
            Filter {
                include: vec![inc("item", item(), Filter::default())],
                ..Filter::default()
            },
        )
    };
    let cases: Vec<(Value, Vec<Include>)> = vec![
        (
            json!("creator"),
            vec![inc("creator", person(), Filter::default())],
        ),
        (
            json!(["creator", "notes"]),
            vec![
                inc("creator", person(), Filter::default()),
                inc("notes", note(), Filter::default()),
            ],
        ),
        (
            json!({"creator": true}),
            vec![inc("creator", person(), Filter::default())],
        ),
        (
            json!({"creator": ""}),
            vec![inc("creator", person(), Filter::default())],
        ),
        (json!({"notes": "item"}), vec![notes_with_item()]),
        (json!({"notes": ["item"]}), vec![notes_with_item()]),
        (json!({"notes": {"item": true}}), vec![notes_with_item()]),
        (
            json!({"relation": "notes", "scope": {"include": "item"}}),
            vec![notes_with_item()],
        ),
        (
            json!({"rel": "notes", "scope": {"include": ["item"]}}),
            vec![notes_with_item()],
        ),
        (
            json!(["creator", {"notes": "item"}]),
            vec![
                inc("creator", person(), Filter::default()),
                notes_with_item(),
            ],
        ),
        (
            json!(["notes", "notes"]),
            vec![inc("notes", note(), Filter::default())],
        ),
        // disableInclude: skipped silently.
        (json!("privateNotes"), vec![]),
        (
            json!(["privateNotes", "creator"]),
            vec![inc("creator", person(), Filter::default())],
        ),
        (json!(null), vec![]),
        (json!([]), vec![]),
    ];
    for (value, expected) in cases {
        let got = filter(item(), json!({"include": value}))
            .unwrap_or_else(|e| panic!("{value}: {}", e.message));
        assert_eq!(got.include, expected, "{value}");
    }
}

#[test]
fn include_scope() {
    let scope = json!({
        "relation": "notes",
        "scope": {
            "where": {"body": {"like": "a%"}, "itemId": {"gt": "1"}},
            "fields": ["body"],
            "order": "body DESC",
            "limit": "2",
            "skip": 1,
            "include": {"item": "creator"}
        }
    });
    let f = filter(item(), json!({"include": scope})).unwrap();
    let [include] = f.include.as_slice() else {
        panic!("{:?}", f.include)
    };
    assert_eq!(include.relation, "notes");
    assert_eq!(include.target, note());
    let s = &include.scope;
    assert_eq!(
        s.where_,
        Some(Where::And(vec![
            cond(
                note(),
                "body",
                Op::Like {
                    pattern: "a%".into(),
                    negated: false,
                    case_insensitive: false
                }
            ),
            cond(note(), "itemId", Op::Gt(int(1))),
        ]))
    );
    assert_eq!(s.fields, Some(vec!["body".to_string()]));
    assert_eq!(
        s.order,
        vec![OrderBy {
            property: prop(note(), "body"),
            descending: true
        }]
    );
    assert_eq!((s.limit, s.skip), (Some(2), 1));
    assert_eq!(s.include[0].relation, "item");
    assert_eq!(s.include[0].scope.include[0].relation, "creator");
    assert_eq!(s.include[0].scope.include[0].target, person());

    // The same through a query string.
    let raw = "filter[include][relation]=notes&filter[include][scope][where][body]=x&filter[include][scope][limit]=2";
    let f = filter(item(), qs_filter(raw)).unwrap();
    assert_eq!(
        f.include[0].scope.where_,
        Some(cond(note(), "body", Op::Eq(text("x"))))
    );
    assert_eq!(f.include[0].scope.limit, Some(2));

    // Five levels are fine.
    let five = json!({"notes": {"item": {"notes": {"item": "creator"}}}});
    assert!(filter(item(), json!({"include": five})).is_ok());
}

#[test]
fn unknown_top_level_keys_are_ignored() {
    let f = filter(item(), json!({"foo": 1, "limit": 3, "$where": "1"})).unwrap();
    assert_eq!(f.limit, Some(3));
    assert_eq!(filter(item(), json!(null)).unwrap(), Filter::default());
}
