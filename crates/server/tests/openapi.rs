//! The OpenAPI document and the API explorer over the real server: the document validates
//! against the OAI's OpenAPI 3.0 JSON schema, lists every route of the wall's models, and
//! the explorer page and its embedded Swagger UI files load.

mod common;

use common::{Body, TestServer};
use portcullis_schema::{Model, RelationKind};
use portcullis_server::route::{model_methods, Segment, Verb};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

/// The OAI's schema for OpenAPI 3.0.x documents (`schemas/v3.0/schema.json`, 2021-09-28).
const OAS_SCHEMA: &str = include_str!("fixtures/openapi-3.0.schema.json");

/// Validates `doc` against the OpenAPI 3.0 schema; the error lists every violation.
fn validate(doc: &Value) -> Result<(), String> {
    let schema: Value = serde_json::from_str(OAS_SCHEMA).expect("schema parses");
    let url = "https://spec.openapis.org/oas/3.0/schema/2021-09-28";
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource(url, schema).expect("schema added");
    let index = compiler
        .compile(url, &mut schemas)
        .expect("schema compiles");
    schemas.validate(doc, index).map_err(|e| format!("{e:#}"))
}

async fn wall() -> TestServer {
    TestServer::start("examples/wall").await
}

async fn fetch(s: &TestServer, path: &str) -> reqwest::Response {
    s.client
        .get(format!("{}{}", s.base, path))
        .send()
        .await
        .expect("request sent")
}

async fn document(s: &TestServer) -> Value {
    let res = fetch(s, "/explorer/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()[header::CONTENT_TYPE].to_str().expect("ascii");
    assert!(ct.starts_with("application/json"), "{ct}");
    res.json().await.expect("json document")
}

fn load(s: &TestServer) -> portcullis_schema::App {
    portcullis_schema::load_app(s.dir.path()).expect("app loads")
}

/// The path and verb a route should be documented under, worked out independently of the
/// generator.
fn expected(model: &Model, verb: Verb, segments: &[Segment]) -> (String, &'static str) {
    let mut path = format!("/{}", model.http_path);
    for seg in segments {
        match seg {
            Segment::Literal(l) => path.push_str(&format!("/{l}")),
            Segment::Param(p) => path.push_str(&format!("/{{{p}}}")),
        }
    }
    let verb = match verb {
        Verb::Get => "get",
        Verb::Head => "head",
        Verb::Post | Verb::All => "post",
        Verb::Put => "put",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
    };
    (path, verb)
}

fn param<'a>(op: &'a Value, name: &str) -> Option<&'a Value> {
    op["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

#[tokio::test]
async fn the_document_is_valid_openapi_3() {
    let s = wall().await;
    let doc = document(&s).await;
    assert_eq!(doc["openapi"], "3.0.3");
    if let Err(e) = validate(&doc) {
        panic!("the document is not valid OpenAPI 3.0:\n{e}");
    }
    // The validator does reject broken documents.
    let mut broken = doc.clone();
    broken["paths"]["/posts"]["get"]
        .as_object_mut()
        .expect("find")
        .remove("responses");
    assert!(validate(&broken).is_err());
    let mut broken = doc.clone();
    broken["paths"]["/posts/{id}"]["get"]["parameters"][0]["in"] = json!("body");
    assert!(validate(&broken).is_err());
}

#[tokio::test]
async fn every_route_of_the_wall_models_is_documented() {
    let s = wall().await;
    let doc = document(&s).await;
    let app = load(&s);
    assert_eq!(doc["servers"], json!([{"url": "/api"}]));
    let mut seen = 0;
    for name in ["Post", "appuser"] {
        let model = app.model_by_name(name).expect("model");
        for method in model_methods(model) {
            for (i, route) in method.routes.iter().enumerate() {
                let (path, verb) = expected(model, route.verb, &route.segments);
                let op = &doc["paths"][&path][verb];
                assert!(
                    op.is_object(),
                    "{name}.{} missing: {verb} {path}",
                    method.name
                );
                assert_eq!(op["tags"], json!([name]), "{verb} {path}");
                let id = op["operationId"].as_str().expect("operationId");
                if i == 0 {
                    assert!(
                        id == format!("{name}.{}", method.name)
                            || id == format!("{name}.prototype.{}", method.name),
                        "{id}"
                    );
                } else {
                    assert!(id.starts_with(&format!("{name}.")), "{id}");
                }
                for seg in &route.segments {
                    if let Segment::Param(p) = seg {
                        let pp = param(op, p).unwrap_or_else(|| panic!("{path}: no {p}"));
                        assert_eq!(pp["in"], "path");
                        assert_eq!(pp["required"], true);
                    }
                }
                seen += 1;
            }
        }
    }
    assert!(seen > 40, "{seen}");

    // Operation ids are unique, and every operation answers the error envelope.
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (verb, op) in item.as_object().expect("item") {
            let id = op["operationId"].as_str().expect("id").to_string();
            assert!(ids.insert(id.clone()), "duplicate {id}");
            assert_eq!(
                op["responses"]["4XX"]["$ref"], "#/components/responses/Error",
                "{verb} {path}"
            );
        }
    }

    // Spot checks in LoopBack's vocabulary.
    let paths = &doc["paths"];
    assert_eq!(paths["/posts"]["get"]["operationId"], "Post.find");
    assert_eq!(
        paths["/posts/{id}/creator"]["get"]["operationId"],
        "Post.prototype.__get__creator"
    );
    assert_eq!(
        paths["/posts/{id}"]["patch"]["operationId"],
        "Post.prototype.patchAttributes"
    );
    assert_eq!(
        paths["/appusers/login"]["post"]["operationId"],
        "appuser.login"
    );
    assert!(paths["/appusers/logout"]["post"].is_object());
    assert!(paths["/appusers/{id}/verify"]["post"].is_object());
    assert!(paths["/appusers/confirm"]["get"].is_object());
    assert!(paths["/appusers/reset"]["post"].is_object());
    assert!(paths["/appusers/change-password"]["post"].is_object());
    assert!(paths["/appusers/reset-password"]["post"].is_object());
    assert!(paths["/posts/{id}"]["head"].is_object());
    let app_user = app.model_by_name("appuser").expect("appuser");
    assert!(app_user
        .relations
        .iter()
        .any(|r| r.kind == RelationKind::HasMany && r.name == "accessTokens"));
    assert!(paths["/appusers/{id}/accessTokens/{fk}"]["delete"]["responses"]["204"].is_object());
    assert!(paths["/appusers/{id}/accessTokens/count"]["get"].is_object());
}

#[tokio::test]
async fn parameters_bodies_responses_and_schemas() {
    let s = wall().await;
    let doc = document(&s).await;
    let paths = &doc["paths"];
    let schemas = &doc["components"]["schemas"];
    let sref = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });

    // filter on reads, where on counts and bulk updates, both JSON strings in the query.
    for (path, verb, name) in [
        ("/posts", "get", "filter"),
        ("/posts/{id}", "get", "filter"),
        ("/posts/findOne", "get", "filter"),
        ("/posts/{id}/creator", "get", "filter"),
        ("/appusers/{id}/accessTokens", "get", "filter"),
        ("/posts/count", "get", "where"),
        ("/posts/update", "post", "where"),
        ("/posts/upsertWithWhere", "post", "where"),
        ("/appusers/{id}/accessTokens/count", "get", "where"),
    ] {
        let p = param(&paths[path][verb], name)
            .unwrap_or_else(|| panic!("{verb} {path} has no {name}"));
        assert_eq!(p["in"], "query");
        assert_eq!(p["schema"]["type"], "string");
    }

    // Bodies and answers.
    let json_schema = |v: &Value| v["content"]["application/json"]["schema"].clone();
    assert_eq!(
        json_schema(&paths["/posts"]["post"]["requestBody"]),
        sref("Post.input")
    );
    assert_eq!(
        json_schema(&paths["/posts"]["post"]["responses"]["200"]),
        sref("Post")
    );
    assert_eq!(
        json_schema(&paths["/posts"]["get"]["responses"]["200"]),
        json!({"type": "array", "items": sref("Post")})
    );
    assert_eq!(
        json_schema(&paths["/posts/{id}"]["patch"]["requestBody"]),
        sref("Post.patch")
    );
    assert_eq!(
        json_schema(&paths["/posts/count"]["get"]["responses"]["200"]),
        sref("Count")
    );
    assert_eq!(
        json_schema(&paths["/posts/{id}/exists"]["get"]["responses"]["200"]),
        sref("Exists")
    );
    assert_eq!(
        json_schema(&paths["/posts/{id}"]["delete"]["responses"]["200"]),
        sref("Count")
    );
    assert_eq!(
        json_schema(&paths["/posts/{id}/creator"]["get"]["responses"]["200"]),
        sref("appuser")
    );
    assert!(paths["/appusers/logout"]["post"]["responses"]["204"].is_object());
    assert!(paths["/appusers/{id}/accessTokens"]["delete"]["responses"]["204"].is_object());

    // Login: credentials in, the access token out.
    let login = &paths["/appusers/login"]["post"];
    let creds = json_schema(&login["requestBody"]);
    for key in ["email", "username", "password", "realm", "ttl"] {
        assert!(creds["properties"][key].is_object(), "{key}");
    }
    assert!(login["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object());
    let token_ref = json_schema(&login["responses"]["200"]);
    let token_name = token_ref["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .expect("token schema");
    for key in ["id", "ttl", "created", "userId"] {
        assert!(schemas[token_name]["properties"][key].is_object(), "{key}");
    }

    // Model schemas: types, required, hidden properties only on the way in, server-set
    // properties only on the way out.
    let post = &schemas["Post"];
    assert_eq!(post["type"], "object");
    assert_eq!(
        post["properties"]["created"],
        json!({"type": "string", "format": "date-time"})
    );
    assert_eq!(post["properties"]["text"], json!({"type": "string"}));
    assert_eq!(post["properties"]["ownerId"], json!({"type": "number"}));
    assert!(post["required"]
        .as_array()
        .expect("required")
        .contains(&json!("text")));
    let post_in = &schemas["Post.input"];
    assert!(post_in["properties"]["ownerId"].is_null());
    assert!(post_in["properties"]["created"].is_null());
    assert_eq!(post_in["required"], json!(["text"]));
    assert!(schemas["Post.patch"]["required"].is_null());

    let user = &schemas["appuser"];
    assert!(user["properties"]["email"].is_object());
    assert!(user["properties"]["password"].is_null(), "hidden: {user}");
    let user_in = &schemas["appuser.input"];
    assert!(user_in["properties"]["password"].is_object());
    let required = user_in["required"].as_array().expect("required");
    assert!(required.contains(&json!("password")) && required.contains(&json!("email")));

    // The error envelope for 4xx.
    let error = &doc["components"]["responses"]["Error"];
    assert_eq!(json_schema(error), sref("Error"));
    assert_eq!(
        schemas["Error"]["properties"]["error"]["required"],
        json!(["statusCode", "message"])
    );

    // The access token: apiKey in the Authorization header or the access_token query,
    // optional everywhere.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["accessToken"],
        json!({"type": "apiKey", "in": "header", "name": "Authorization",
               "description": schemes["accessToken"]["description"]})
    );
    assert_eq!(schemes["accessTokenQuery"]["in"], "query");
    assert_eq!(schemes["accessTokenQuery"]["name"], "access_token");
    assert_eq!(
        doc["security"],
        json!([{}, {"accessToken": []}, {"accessTokenQuery": []}])
    );
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(tags, ["appuser", "Post"]);
}

#[tokio::test]
async fn the_document_is_deterministic() {
    let s = wall().await;
    let served = fetch(&s, "/explorer/openapi.json")
        .await
        .text()
        .await
        .expect("body");
    let app = load(&s);
    let a = portcullis_server::openapi::openapi_document(&app).to_string();
    let b = portcullis_server::openapi::openapi_document(&load(&s)).to_string();
    assert_eq!(a, b);
    assert_eq!(served, a);
}

/// The `href` and `src` attributes of an HTML page.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

#[tokio::test]
async fn the_explorer_page_and_its_assets_load() {
    let s = wall().await;
    for path in ["/explorer", "/explorer/"] {
        let res = fetch(&s, path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let ct = res.headers()[header::CONTENT_TYPE].to_str().expect("ascii");
        assert!(ct.starts_with("text/html"), "{ct}");
        let html = res.text().await.expect("html");
        assert!(html.contains("swagger-ui"), "{html}");
        assert!(html.contains("Set Access Token"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no CDN"
        );
    }
    let html = fetch(&s, "/explorer").await.text().await.expect("html");
    let assets = links(&html);
    for want in [
        "/explorer/swagger-ui.css",
        "/explorer/swagger-ui-bundle.js",
        "/explorer/explorer.js",
    ] {
        assert!(assets.iter().any(|a| a == want), "{want} in {assets:?}");
    }
    for asset in &assets {
        let res = fetch(&s, asset).await;
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
        let ct = res.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_string();
        let want = if asset.ends_with(".js") {
            "text/javascript"
        } else if asset.ends_with(".css") {
            "text/css"
        } else if asset.ends_with(".png") {
            "image/png"
        } else {
            panic!("unexpected asset {asset}")
        };
        assert!(ct.starts_with(want), "{asset}: {ct}");
        let body = res.bytes().await.expect("body");
        assert!(!body.is_empty(), "{asset}");
    }

    // Swagger UI's files are cached and revalidated by ETag.
    let res = fetch(&s, "/explorer/swagger-ui-bundle.js").await;
    let cache = res.headers()[header::CACHE_CONTROL]
        .to_str()
        .expect("ascii");
    assert!(cache.contains("max-age="), "{cache}");
    let etag = res.headers()[header::ETAG].clone();
    let body = res.bytes().await.expect("body");
    assert!(body.len() > 500_000, "the real bundle");
    assert!(String::from_utf8_lossy(&body).contains("SwaggerUIBundle"));
    let res = s
        .client
        .get(format!("{}/explorer/swagger-ui-bundle.js", s.base))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // The page, its script and the document are revalidated every time.
    for path in [
        "/explorer",
        "/explorer/explorer.js",
        "/explorer/openapi.json",
    ] {
        let res = fetch(&s, path).await;
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache", "{path}");
    }
    let script = fetch(&s, "/explorer/explorer.js")
        .await
        .text()
        .await
        .expect("js");
    assert!(script.contains("\"/explorer/openapi.json\""), "{script}");
    assert!(script.contains("preauthorizeApiKey"));
    assert!(script.contains("persistAuthorization: true"));
}

/// What Swagger UI sends once a token is set: the bare token in `Authorization` (or the
/// `access_token` query parameter) works against the API.
#[tokio::test]
async fn the_token_as_the_explorer_sends_it() {
    let s = wall().await;
    let (st, body) = s
        .post(
            "/api/appusers",
            &json!({"email": "e@example.com", "password": "secret-e"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "e@example.com", "password": "secret-e"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let token = body["id"].as_str().expect("token").to_string();

    let data = json!({"text": "hello"});
    let (st, _) = s.post("/api/posts", &data).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&data)),
            Some(&token),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .post(&format!("/api/posts?access_token={token}"), &data)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

fn set_explorer(dir: &std::path::Path, config: Value) {
    std::fs::write(
        dir.join("server/component-config.json"),
        serde_json::to_string(&json!({ "loopback-component-explorer": config })).expect("json"),
    )
    .expect("write config");
}

fn wall_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = common::workspace_root().join("examples/wall");
    copy(&from, dir.path());
    dir
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name.to_string_lossy().contains(".sqlite") {
            continue;
        }
        if entry.path().is_dir() {
            copy(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}

#[tokio::test]
async fn the_mount_path_comes_from_component_config() {
    let dir = wall_copy();
    set_explorer(dir.path(), json!({"mountPath": "/docs/"}));
    let s = TestServer::start_in(dir).await;
    assert_eq!(
        fetch(&s, "/docs/openapi.json").await.status(),
        StatusCode::OK
    );
    let html = fetch(&s, "/docs").await.text().await.expect("html");
    assert!(html.contains("/docs/swagger-ui-bundle.js"), "{html}");
    assert_eq!(
        fetch(&s, "/docs/swagger-ui.css").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        fetch(&s, "/explorer/openapi.json").await.status(),
        StatusCode::NOT_FOUND
    );

    let dir = wall_copy();
    set_explorer(dir.path(), Value::Null);
    let s = TestServer::start_in(dir).await;
    assert_eq!(fetch(&s, "/explorer").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        fetch(&s, "/explorer/openapi.json").await.status(),
        StatusCode::NOT_FOUND
    );
}
