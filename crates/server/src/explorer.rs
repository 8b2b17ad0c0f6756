//! The API explorer (`loopback-component-explorer`): Swagger UI over the app's OpenAPI
//! document, at the configured mount path (`/explorer` by default).
//!
//! - `GET <mount>` and `<mount>/`: the page.
//! - `GET <mount>/openapi.json`: the document ([`crate::openapi::openapi_document`]).
//! - `GET <mount>/<asset>`: Swagger UI's files, embedded in the binary (no CDN), with
//!   a day of caching and an `ETag` for revalidation.
//!
//! The access token is set with the "Set Access Token" field above Swagger UI, or its
//! "Authorize" dialog, or `?access_token=` in the page URL; requests then carry it in the
//! `Authorization` header.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use portcullis_schema::{App, Middleware};
use sha2::{Digest, Sha256};
use swagger_ui_redist::SwaggerUi;

use crate::openapi::{openapi_document, HEADER_SCHEME};

/// Caching of Swagger UI's files: a day, then revalidated by `ETag`.
const ASSET_CACHE: &str = "public, max-age=86400";
/// Caching of what changes with the app (page, script, document): always revalidated.
const NO_CACHE: &str = "no-cache";

/// One response body the explorer serves.
#[derive(Clone)]
struct Asset {
    body: Bytes,
    content_type: &'static str,
    cache: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: impl Into<Bytes>, content_type: &'static str, cache: &'static str) -> Asset {
        let body = body.into();
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        Asset {
            body,
            content_type,
            cache,
            etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        }
    }

    fn respond(&self, headers: &HeaderMap) -> Response {
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',').any(|tag| {
                    let tag = tag.trim();
                    tag == "*" || tag.trim_start_matches("W/").as_bytes() == self.etag.as_bytes()
                })
            });
        let common = [
            (header::CACHE_CONTROL, HeaderValue::from_static(self.cache)),
            (header::ETAG, self.etag.clone()),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        (
            StatusCode::OK,
            common,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.body.clone(),
        )
            .into_response()
    }
}

fn content_type(file_name: &str) -> &'static str {
    match file_name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// The mount path without its trailing slash (`""` for the site root), or `None` when it
/// is not a plain path that can be routed.
fn normalize_mount(path: &str) -> Option<String> {
    let trimmed = path.trim().trim_end_matches('/');
    let plain = trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~'));
    if !plain || trimmed.contains("//") {
        return None;
    }
    if trimmed.is_empty() {
        return Some(String::new());
    }
    if trimmed.starts_with('/') {
        Some(trimmed.to_string())
    } else {
        Some(format!("/{trimmed}"))
    }
}

fn same_path(a: &str, b: &str) -> bool {
    let a = a.trim().trim_end_matches('/');
    let b = b.trim().trim_end_matches('/');
    a.eq_ignore_ascii_case(b)
}

fn page(mount: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API Explorer</title>
<link rel="stylesheet" type="text/css" href="{mount}/swagger-ui.css">
<link rel="stylesheet" type="text/css" href="{mount}/index.css">
<link rel="stylesheet" type="text/css" href="{mount}/explorer.css">
<link rel="icon" type="image/png" href="{mount}/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="{mount}/favicon-16x16.png" sizes="16x16">
</head>
<body>
<form id="explorer-token" class="explorer-token" autocomplete="off">
  <span class="explorer-title">API Explorer</span>
  <label for="explorer-token-input">Access token</label>
  <input id="explorer-token-input" type="text" placeholder="accessToken" spellcheck="false">
  <button type="submit">Set Access Token</button>
  <span id="explorer-token-state" class="explorer-token-state"></span>
</form>
<div id="swagger-ui"></div>
<script src="{mount}/swagger-ui-bundle.js" charset="utf-8"></script>
<script src="{mount}/explorer.js" charset="utf-8"></script>
</body>
</html>
"#
    )
}

fn script(mount: &str) -> String {
    // The scheme name and URL are plain ASCII without quotes (checked paths), so they can
    // be embedded in string literals as they are.
    format!(
        r##"(function () {{
  "use strict";
  var SCHEME = "{HEADER_SCHEME}";
  function setToken(ui, token) {{
    var state = document.getElementById("explorer-token-state");
    var actions = ui.authActions;
    if (token) {{
      ui.preauthorizeApiKey(SCHEME, token);
      // Kept in localStorage like a token set with "Authorize".
      if (actions.persistAuthorizationIfNeeded) actions.persistAuthorizationIfNeeded();
      if (state) state.textContent = "Token set";
    }} else {{
      (actions.logoutWithPersistOption || actions.logout)([SCHEME]);
      if (state) state.textContent = "";
    }}
  }}
  // The token Swagger UI keeps across reloads (persistAuthorization).
  function persisted() {{
    try {{
      var saved = JSON.parse(window.localStorage.getItem("authorized") || "{{}}");
      return saved && saved[SCHEME] ? saved[SCHEME].value : null;
    }} catch (e) {{
      return null;
    }}
  }}
  window.addEventListener("load", function () {{
    var input = document.getElementById("explorer-token-input");
    var ui = SwaggerUIBundle({{
      url: "{mount}/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      displayRequestDuration: true,
      docExpansion: "list",
      filter: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      onComplete: function () {{
        var fromUrl = new URLSearchParams(window.location.search).get("access_token");
        if (fromUrl) {{
          setToken(ui, fromUrl);
        }}
        var current = persisted();
        if (current && input) {{
          input.value = current;
          var state = document.getElementById("explorer-token-state");
          if (state) state.textContent = "Token set";
        }}
      }}
    }});
    window.ui = ui;
    var form = document.getElementById("explorer-token");
    if (form) {{
      form.addEventListener("submit", function (event) {{
        event.preventDefault();
        setToken(ui, input ? input.value.trim() : "");
      }});
    }}
  }});
}})();
"##
    )
}

const STYLE: &str = r#".explorer-token {
  display: flex;
  align-items: center;
  gap: 8px;
  padding: 10px 20px;
  background: #1b1b1b;
  color: #fff;
  font-family: sans-serif;
  font-size: 14px;
}
.explorer-token .explorer-title {
  font-weight: bold;
  font-size: 18px;
  margin-right: auto;
}
.explorer-token input {
  width: 24em;
  padding: 4px 6px;
  font-family: monospace;
}
.explorer-token button {
  padding: 4px 10px;
  cursor: pointer;
}
.explorer-token .explorer-token-state {
  min-width: 6em;
  color: #9c9;
}
"#;

/// The explorer's routes, or `None` when the app turns the explorer off (or its mount
/// path cannot be served beside the REST API and static mounts).
pub fn explorer_router(app: &App) -> Option<Router> {
    let config = app.explorer.as_ref()?;
    let Some(mount) = normalize_mount(&config.mount_path) else {
        tracing::warn!(
            mount_path = %config.mount_path,
            "explorer disabled: the mount path must be a plain URL path"
        );
        return None;
    };
    let clashes_with_rest = same_path(&mount, &app.config.rest_api_root);
    let clashes_with_static = app.middleware.iter().any(|m| {
        matches!(m, Middleware::Static { mount: s, .. }
            if !(s.is_empty() || s == "/") && same_path(s, &mount))
    });
    if clashes_with_rest
        || clashes_with_static
        || (mount.is_empty() && is_root(&app.config.rest_api_root))
    {
        tracing::warn!(
            mount_path = %config.mount_path,
            "explorer disabled: its mount path is taken by the REST API or static files"
        );
        return None;
    }

    let document = openapi_document(app).to_string();
    let mut router = Router::new();
    let mut serve = |path: String, asset: Asset| {
        router = std::mem::take(&mut router).route(
            &path,
            get(move |headers: HeaderMap| {
                let asset = asset.clone();
                async move { asset.respond(&headers) }
            }),
        );
    };

    let index = Asset::new(page(&mount), content_type("index.html"), NO_CACHE);
    if !mount.is_empty() {
        serve(mount.clone(), index.clone());
    }
    serve(format!("{mount}/"), index);
    serve(
        format!("{mount}/openapi.json"),
        Asset::new(document, content_type("openapi.json"), NO_CACHE),
    );
    serve(
        format!("{mount}/explorer.js"),
        Asset::new(script(&mount), content_type("explorer.js"), NO_CACHE),
    );
    serve(
        format!("{mount}/explorer.css"),
        Asset::new(STYLE, content_type("explorer.css"), ASSET_CACHE),
    );
    for (file, bytes) in SwaggerUi::static_files() {
        let name = file.file_name();
        serve(
            format!("{mount}/{name}"),
            Asset::new(Bytes::from_static(bytes), content_type(name), ASSET_CACHE),
        );
    }
    Some(router)
}

fn is_root(path: &str) -> bool {
    path.trim().trim_end_matches('/').is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_normalized_or_refused() {
        assert_eq!(normalize_mount("/explorer").as_deref(), Some("/explorer"));
        assert_eq!(normalize_mount("/explorer/").as_deref(), Some("/explorer"));
        assert_eq!(normalize_mount("docs").as_deref(), Some("/docs"));
        assert_eq!(normalize_mount("/").as_deref(), Some(""));
        assert_eq!(normalize_mount("/a/{b}"), None);
        assert_eq!(normalize_mount("/a/:b"), None);
        assert_eq!(normalize_mount("/a\"b"), None);
        assert_eq!(normalize_mount("//x"), None);
    }

    #[test]
    fn etags_answer_not_modified() {
        let asset = Asset::new("body", "text/plain", NO_CACHE);
        let mut headers = HeaderMap::new();
        assert_eq!(asset.respond(&headers).status(), StatusCode::OK);
        headers.insert(header::IF_NONE_MATCH, asset.etag.clone());
        assert_eq!(asset.respond(&headers).status(), StatusCode::NOT_MODIFIED);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(asset.respond(&headers).status(), StatusCode::OK);
    }
}
