//! Loading app directories: inheritance, model-config, relations, and one clear error per
//! bad file, naming the file and the JSON path.

use std::path::Path;

use portcullis_authz::{AccessType, Permission, PropertyMatch, RuleSource};
use portcullis_schema::{load_app, Connector, LoadError, Middleware, PropType, RelationKind};
use serde_json::{json, Value};

fn write(root: &Path, rel: &str, v: Value) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
    std::fs::write(p, serde_json::to_string_pretty(&v).expect("json")).expect("write");
}

/// A small app: `Post` belongs to `author` (a User), with ACLs and model-config overrides.
fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    write(
        r,
        "server/config.json",
        json!({"restApiRoot": "/v1/", "port": 4000, "remoting": {"json": {"limit": "2mb"}}}),
    );
    write(
        r,
        "server/datasources.json",
        json!({"db": {"connector": "memory", "file": "data.json"}}),
    );
    write(
        r,
        "server/model-config.json",
        json!({
            "_meta": {"sources": ["loopback/common/models", "../common/models"]},
            "User": {"dataSource": "db", "public": false},
            "author": {"dataSource": "db"},
            "Post": {"dataSource": "db", "options": {"strict": true},
                     "acls": [{"principalType": "ROLE", "principalId": "$everyone", "permission": "ALLOW", "accessType": "READ"}]}
        }),
    );
    write(
        r,
        "common/models/author.json",
        json!({"name": "author", "base": "User", "hidden": ["secret"], "properties": {"secret": "string"}}),
    );
    write(
        r,
        "common/models/post.json",
        json!({
            "name": "Post",
            "properties": {"title": {"type": "string", "required": true}, "tags": ["string"], "created": {"defaultFn": "now"}},
            "relations": {"writer": {"type": "belongsTo", "model": "author", "foreignKey": "authorId"}},
            "acls": [
                {"principalType": "ROLE", "principalId": "$everyone", "permission": "DENY"},
                {"principalType": "ROLE", "principalId": "$everyone", "permission": "DENY", "accessType": "READ"}
            ]
        }),
    );
    write(
        r,
        "server/middleware.json",
        json!({"files": {"loopback#static": {"params": "$!../client"}}, "final": {"loopback#urlNotFound": {}, "mystery#thing": {}}}),
    );
    dir
}

#[test]
fn a_loopback_app_compiles() {
    let dir = app_dir();
    let app = load_app(dir.path()).expect("loads");
    assert_eq!(app.config.rest_api_root, "/v1");
    assert_eq!(app.config.port, Some(4000));
    assert_eq!(app.config.body_limit, 2 * 1024 * 1024);
    assert_eq!(
        app.datasources["db"].connector,
        Connector::Memory {
            file: Some(dir.path().join("data.json"))
        }
    );

    let author = app.model_by_name("author").expect("author");
    assert!(author.is_user_model() && author.public);
    assert_eq!(
        author.lineage,
        vec!["author", "User", "PersistedModel", "Model"]
    );
    assert_eq!(author.plural, "authors");
    let names: Vec<&str> = author.properties.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "realm",
            "username",
            "password",
            "email",
            "emailVerified",
            "verificationToken",
            "secret",
            "id"
        ]
    );
    assert!(
        author.property("password").is_some_and(|p| p.hidden),
        "hidden is inherited"
    );
    assert!(
        author.property("secret").is_some_and(|p| p.hidden),
        "and extended"
    );
    assert_eq!(author.acls.len(), 13, "User's built-in ACLs are inherited");

    let post = app.model_by_name("Post").expect("Post");
    assert_eq!(post.http_path, "Posts");
    assert!(post.is_strict());
    assert_eq!(
        post.property("tags").map(|p| p.ty.clone()),
        Some(PropType::Array(Some(Box::new(PropType::String))))
    );
    assert_eq!(
        post.property("created").map(|p| p.ty.clone()),
        Some(PropType::Date)
    );
    let writer = post.relation("writer").expect("writer");
    assert_eq!(
        (writer.kind, writer.foreign_key.as_str()),
        (RelationKind::BelongsTo, "authorId")
    );
    assert_eq!(
        post.property("authorId").map(|p| p.ty.clone()),
        Some(PropType::Number),
        "the foreign key is added"
    );
    assert_eq!(post.owner_keys, vec!["authorId"]);
    // model-config's rule replaces the static one with the same key, in place.
    assert_eq!(post.acls.len(), 2);
    assert_eq!(post.acls[1].permission, Some(Permission::Allow));
    assert_eq!(post.acls[1].access_type, AccessType::Read);
    assert_eq!(post.acls[1].property, PropertyMatch::Any);
    assert!(matches!(
        post.acls[1].source,
        RuleSource::ModelConfig { .. }
    ));

    assert!(app.middleware.contains(&Middleware::Static {
        mount: "/".into(),
        dir: dir.path().join("server/../client"),
    }));
    assert!(
        app.warnings.iter().any(|w| w.contains("mystery#thing")),
        "{:?}",
        app.warnings
    );
    assert!(
        app.model_by_name("AccessToken").is_some_and(|m| !m.public),
        "auth models are always attached"
    );
}

fn expect_invalid(dir: &Path, file_suffix: &str, path: &str, words: &str) {
    match load_app(dir) {
        Err(LoadError::Invalid {
            file,
            path: p,
            message,
        }) => {
            assert!(file.ends_with(file_suffix), "{}", file.display());
            assert_eq!(p, path, "{message}");
            assert!(message.contains(words), "{message}");
        }
        Err(other) => panic!("expected an invalid-file error, got {other}"),
        Ok(_) => panic!("expected an invalid-file error for `{path}`, but the app loaded"),
    }
}

#[test]
fn bad_acl_values_name_the_file_and_the_rule() {
    let cases = [
        (
            json!({"principalType": "ROLE", "principalId": "$everyone", "permission": "deny"}),
            "$.acls[0].permission",
            "`deny`",
        ),
        (
            json!({"principalType": "ROLE", "principalId": "$everyone", "permission": "DENY", "accessType": "read"}),
            "$.acls[0].accessType",
            "`read`",
        ),
        (
            json!({"principalType": "role", "principalId": "$everyone", "permission": "DENY"}),
            "$.acls[0].principalType",
            "`role`",
        ),
        (
            json!({"principalId": "$everyone", "permission": "DENY"}),
            "$.acls[0].principalType",
            "missing",
        ),
        (
            json!({"principalType": "ROLE", "permission": "DENY"}),
            "$.acls[0].principalId",
            "missing",
        ),
    ];
    for (rule, path, words) in cases {
        let dir = app_dir();
        write(
            dir.path(),
            "common/models/post.json",
            json!({"name": "Post", "properties": {}, "acls": [rule]}),
        );
        expect_invalid(dir.path(), "post.json", path, words);
    }
}

#[test]
fn other_bad_files_fail_with_one_clear_error() {
    let dir = app_dir();
    std::fs::write(dir.path().join("common/models/post.json"), "{ not json").expect("write");
    assert!(
        matches!(load_app(dir.path()), Err(LoadError::Json { file, .. }) if file.ends_with("post.json"))
    );

    // Unknown named types are objects, as LoopBack treats model-typed properties.
    let dir = app_dir();
    write(
        dir.path(),
        "common/models/post.json",
        json!({"name": "Post", "properties": {"x": {"type": "Address"}}}),
    );
    let loaded = load_app(dir.path()).map_err(|e| e.to_string());
    let ty = loaded
        .as_ref()
        .ok()
        .and_then(|a| a.model_by_name("Post"))
        .and_then(|m| m.property("x"))
        .map(|p| p.ty.clone());
    assert_eq!(ty, Some(PropType::Object));

    let dir = app_dir();
    write(
        dir.path(),
        "common/models/post.json",
        json!({"name": "Post", "relations": {"r": {"type": "belongsTo", "model": "Nope"}}}),
    );
    expect_invalid(dir.path(), "post.json", "$.relations.r.model", "`Nope`");

    let dir = app_dir();
    write(
        dir.path(),
        "server/model-config.json",
        json!({"Post": {"dataSource": "nowhere"}}),
    );
    expect_invalid(
        dir.path(),
        "model-config.json",
        "$.Post.dataSource",
        "`nowhere`",
    );

    let dir = app_dir();
    write(
        dir.path(),
        "server/datasources.json",
        json!({"db": {"connector": "mongodb"}}),
    );
    expect_invalid(dir.path(), "datasources.json", "$.db.connector", "mongodb");

    let dir = app_dir();
    write(
        dir.path(),
        "common/models/post.json",
        json!({"name": "Post", "base": "Post2"}),
    );
    expect_invalid(dir.path(), "post.json", "$.base", "`Post2`");
}

#[test]
fn unknown_keys_warn_and_pluralisation_follows_loopback() {
    let dir = app_dir();
    write(
        dir.path(),
        "common/models/post.json",
        json!({"name": "Post", "colour": "blue", "properties": {"t": {"type": "string", "flavour": 1}}}),
    );
    let app = load_app(dir.path()).expect("loads with warnings");
    assert!(
        app.warnings.iter().any(|w| w.contains("`colour`")),
        "{:?}",
        app.warnings
    );
    assert!(
        app.warnings.iter().any(|w| w.contains("`flavour`")),
        "{:?}",
        app.warnings
    );
    for (one, many) in [
        ("post", "posts"),
        ("Category", "Categories"),
        ("box", "boxes"),
        ("person", "people"),
        ("day", "days"),
        ("status", "statuses"),
    ] {
        assert_eq!(portcullis_schema::pluralize(one), many);
    }
}
