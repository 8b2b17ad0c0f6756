//! End-to-end tests of `portcullis acl …`: the real binary on temporary copies of
//! `examples/wall`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn wall() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wall")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.path().extension().is_some_and(|e| e == "json") {
            // Only the definition files matter; a database file left by a server run is not
            // copied.
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A fresh copy of the wall example, removed on drop.
struct TempApp(PathBuf);

impl TempApp {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-acl-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&wall(), &dir);
        TempApp(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn post_json(&self) -> PathBuf {
        self.0.join("common/models/post.json")
    }
}

impl Drop for TempApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn portcullis(args: &[&str], app: &Path, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("acl")
        .args(args.iter().take(1))
        .arg(app)
        .args(args.iter().skip(1))
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `after` is `before` with one contiguous piece of text inserted, and returns it.
fn single_insertion(before: &str, after: &str) -> String {
    assert!(after.len() > before.len(), "nothing was inserted");
    let prefix = before
        .bytes()
        .zip(after.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let inserted = after.len() - before.len();
    let rebuilt = format!("{}{}", &after[..prefix], &after[prefix + inserted..]);
    assert_eq!(rebuilt, before, "text outside the insertion changed");
    after[prefix..prefix + inserted].to_string()
}

#[test]
fn explain_the_wall() {
    let app = TempApp::new();
    let run = |args: &[&str]| {
        let mut full = vec!["explain", "--model", "Post"];
        full.extend_from_slice(args);
        let out = portcullis(&full, app.path(), None);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };

    let out = run(&["--method", "deleteById", "--anonymous"]);
    assert!(out.contains("Static rules only"), "{out}");
    assert!(out.contains("DENIED: a REST client gets 401"), "{out}");
    assert!(out.contains("decided by Post.json acls[0]"), "{out}");
    assert!(out.contains("$owner: not held"), "{out}");

    let out = run(&["--method", "deleteById", "--user", "1", "--owner"]);
    assert!(out.contains("ALLOWED"), "{out}");
    assert!(out.contains("decided by Post.json acls[2]"), "{out}");

    let out = run(&["--method", "create", "--user", "1"]);
    assert!(out.contains("ALLOWED"), "{out}");
    assert!(out.contains("decided by Post.json acls[1]"), "{out}");

    let out = run(&["--method", "find", "--anonymous"]);
    assert!(out.contains("ALLOWED"), "{out}");
    assert!(out.contains("decided by Post.json acls[3]"), "{out}");

    // No user and no --anonymous is anonymous too; a user without --owner is denied.
    let out = run(&["--method", "deleteById"]);
    assert!(out.contains("DENIED: a REST client gets 401"), "{out}");
    let out = run(&["--method", "deleteById", "--user", "2"]);
    assert!(out.contains("DENIED: a REST client gets 401"), "{out}");
    // An alias resolves to its canonical method.
    let out = run(&["--method", "updateAttributes", "--user", "1", "--owner"]);
    assert!(out.contains("Post.patchAttributes"), "{out}");
    assert!(out.contains("alias of `patchAttributes`"), "{out}");
}

#[test]
fn explain_reports_403_when_configured_and_a_token_is_present() {
    let app = TempApp::new();
    let config = app.path().join("server/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("{", "{\n  \"aclErrorStatus\": 403,", 1),
    )
    .unwrap();
    let args = ["explain", "--model", "Post", "--method", "deleteById"];
    let out = portcullis(&[&args[..], &["--user", "2"]].concat(), app.path(), None);
    assert!(
        stdout(&out).contains("DENIED: a REST client gets 403"),
        "{}",
        stdout(&out)
    );
    let out = portcullis(&args, app.path(), None);
    assert!(
        stdout(&out).contains("DENIED: a REST client gets 401"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn explain_refuses_unknown_names_listing_valid_ones() {
    let app = TempApp::new();
    let out = portcullis(
        &["explain", "--model", "Pots", "--method", "find"],
        app.path(),
        None,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown model `Pots`") && err.contains("Post"),
        "{err}"
    );

    let out = portcullis(
        &["explain", "--model", "Post", "--method", "destroy"],
        app.path(),
        None,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unknown method `destroy`"), "{err}");
    assert!(
        err.contains("deleteById (destroyById, removeById)"),
        "{err}"
    );
    assert!(err.contains("__get__creator"), "{err}");

    let out = portcullis(
        &["explain", "--model", "Post", "--method", "find", "--owner"],
        app.path(),
        None,
    );
    assert!(!out.status.success(), "--owner needs --user");
}

#[test]
fn list_shows_rules_in_pool_order_with_sources() {
    let app = TempApp::new();
    let out = portcullis(&["list", "--model", "appuser"], app.path(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stdout(&out);
    assert!(out.contains("appuser (public"), "{out}");
    let first = out
        .find("built-in User acls[0]")
        .expect("built-in rules listed");
    let last = out.find("built-in User acls[12]").expect("all 13 rules");
    assert!(first < last);
    let out = portcullis(&["list"], app.path(), None);
    assert!(stdout(&out).contains("Post.json acls[3]"));
}

#[test]
fn audit_the_wall_then_flag_an_alias_rule() {
    let app = TempApp::new();
    let out = portcullis(&["audit"], app.path(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("Post.deleteById"),
        ["Post.deleteById", "WRITE", "DENY", "DENY", "ALLOW"]
    );
    assert_eq!(
        line("Post.create"),
        ["Post.create", "WRITE", "DENY", "ALLOW", "ALLOW"]
    );
    assert_eq!(
        line("Post.find"),
        ["Post.find", "READ", "ALLOW", "ALLOW", "ALLOW"]
    );
    assert!(
        text.contains("[include-exposure] Post.creator -> appuser"),
        "{text}"
    );
    assert!(
        text.contains("[relation-route] Post.creator -> appuser"),
        "{text}"
    );
    assert!(!text.contains("never-matches"), "{text}");

    let out = portcullis(
        &[
            "add",
            "--model",
            "Post",
            "--property",
            "updateAttributes",
            "--principal-type",
            "ROLE",
            "--principal-id",
            "$owner",
            "--permission",
            "ALLOW",
        ],
        app.path(),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alias of `patchAttributes`"));

    let out = portcullis(&["audit"], app.path(), None);
    assert!(out.status.success(), "findings alone do not fail the audit");
    let text = stdout(&out);
    assert!(
        text.contains("[never-matches] Post.json acls[4] (Post): `updateAttributes` is an alias of `patchAttributes`"),
        "{text}"
    );
    let out = portcullis(&["audit", "--strict"], app.path(), None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn audit_flags_open_models_and_anonymous_writes() {
    let app = TempApp::new();
    let post = app.post_json();
    let text = std::fs::read_to_string(&post).unwrap();
    let start = text.find("\"acls\": [").unwrap();
    let end = text[start..].find("\n  ],").unwrap() + start + "\n  ]".len();
    std::fs::write(
        &post,
        format!("{}\"acls\": []{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let out = portcullis(&["audit"], app.path(), None);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("[no-acls] Post has no ACL rules at all"),
        "{text}"
    );
    assert!(
        text.contains("[anonymous-write] Post: WRITE methods open to anonymous callers: create, patchOrCreate"),
        "{text}"
    );
    assert!(text.contains("Post.find  "), "{text}");
    assert!(text.contains("ALLOW*"), "{text}");
}

#[test]
fn add_preserves_the_rest_of_the_file() {
    let app = TempApp::new();
    let before = std::fs::read_to_string(app.post_json()).unwrap();
    let out = portcullis(
        &[
            "add",
            "--model",
            "Post",
            "--property",
            "findById",
            "--property",
            "exists",
            "--access-type",
            "READ",
            "--principal-type",
            "ROLE",
            "--principal-id",
            "$unauthenticated",
            "--permission",
            "DENY",
        ],
        app.path(),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("acls[4]"), "{}", stdout(&out));
    let after = std::fs::read_to_string(app.post_json()).unwrap();
    let inserted = single_insertion(&before, &after);
    assert_eq!(
        inserted,
        ",\n    {\n      \"accessType\": \"READ\",\n      \"principalType\": \"ROLE\",\n      \
         \"principalId\": \"$unauthenticated\",\n      \"permission\": \"DENY\",\n      \
         \"property\": [\n        \"findById\",\n        \"exists\"\n      ]\n    }"
    );

    // The new rule is live: anonymous findById is now denied, find still allowed.
    let out = portcullis(
        &["explain", "--model", "Post", "--method", "findById"],
        app.path(),
        None,
    );
    assert!(stdout(&out).contains("DENIED"), "{}", stdout(&out));
    assert!(stdout(&out).contains("decided by Post.json acls[4]"));
}

#[test]
fn add_fills_an_empty_acls_array() {
    let app = TempApp::new();
    let file = app.path().join("common/models/appuser.json");
    let before = std::fs::read_to_string(&file).unwrap();
    let out = portcullis(
        &[
            "add",
            "--model",
            "appuser",
            "--property",
            "find",
            "--principal-type",
            "USER",
            "--principal-id",
            "1",
            "--permission",
            "ALLOW",
        ],
        app.path(),
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::read_to_string(&file).unwrap();
    let inserted = single_insertion(&before, &after);
    assert_eq!(
        inserted,
        "\n    {\n      \"accessType\": \"*\",\n      \"principalType\": \"USER\",\n      \
         \"principalId\": \"1\",\n      \"permission\": \"ALLOW\",\n      \"property\": \"find\"\n    }\n  "
    );
    let out = portcullis(&["list", "--model", "appuser"], app.path(), None);
    assert!(
        stdout(&out).contains("appuser.json acls[0]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn interactive_add_reads_answers_from_stdin() {
    let app = TempApp::new();
    let before = std::fs::read_to_string(app.post_json()).unwrap();
    // model, scope, method, access type (default), role "other", its name, permission.
    let answers = "Post\n2\npatchAttributes\n\n5\neditor\nALLOW\n";
    let out = portcullis(&["add"], app.path(), Some(answers));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("? Select the model to apply the ACL entry to:"),
        "{text}"
    );
    assert!(text.contains("? Enter the role name:"), "{text}");
    let after = std::fs::read_to_string(app.post_json()).unwrap();
    let inserted = single_insertion(&before, &after);
    assert!(inserted.contains("\"accessType\": \"*\""), "{inserted}");
    assert!(
        inserted.contains("\"principalId\": \"editor\""),
        "{inserted}"
    );
    assert!(
        inserted.contains("\"property\": \"patchAttributes\""),
        "{inserted}"
    );

    // --interactive with a wrong answer asks again; numbers and values both work.
    let answers = "Nope\n2\n1\n2\n3\n2\n";
    let out = portcullis(&["add", "--interactive"], app.path(), Some(answers));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("`Nope` is not one of the choices"));
    let last = std::fs::read_to_string(app.post_json()).unwrap();
    let inserted = single_insertion(&after, &last);
    assert!(inserted.contains("\"accessType\": \"READ\""), "{inserted}");
    assert!(
        inserted.contains("\"principalId\": \"$authenticated\""),
        "{inserted}"
    );
    assert!(inserted.contains("\"permission\": \"DENY\""), "{inserted}");
    assert!(!inserted.contains("property"), "{inserted}");
}

#[test]
fn interactive_add_stops_cleanly_when_stdin_ends() {
    let app = TempApp::new();
    let before = std::fs::read_to_string(app.post_json()).unwrap();
    let out = portcullis(&["add"], app.path(), Some("Post\n2\n"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stdin closed"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(app.post_json()).unwrap(), before);
}

#[test]
fn invalid_values_are_refused_and_the_file_untouched() {
    let app = TempApp::new();
    let before = std::fs::read_to_string(app.post_json()).unwrap();
    let base = ["add", "--model", "Post"];
    let ok = ["--principal-type", "ROLE", "--principal-id", "$everyone"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [&ok[..], &["--permission", "allow"]].concat(),
            "unknown permission `allow`",
        ),
        (
            [&ok[..], &["--permission", "ALLOW", "--access-type", "read"]].concat(),
            "unknown accessType `read`",
        ),
        (
            vec![
                "--principal-type",
                "role",
                "--principal-id",
                "x",
                "--permission",
                "ALLOW",
            ],
            "unknown principalType `role`",
        ),
        (
            vec![
                "--principal-type",
                "APPLICATION",
                "--principal-id",
                "x",
                "--permission",
                "ALLOW",
            ],
            "unknown principalType `APPLICATION`",
        ),
        (
            [
                &ok[..],
                &[
                    "--permission",
                    "ALLOW",
                    "--property",
                    "*",
                    "--property",
                    "find",
                ],
            ]
            .concat(),
            "`*` cannot be part",
        ),
        (
            vec![
                "--principal-type",
                "ROLE",
                "--principal-id",
                "",
                "--permission",
                "ALLOW",
            ],
            "missing principalId",
        ),
        (ok.to_vec(), "missing --permission"),
    ];
    for (extra, message) in cases {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let out = portcullis(&args, app.path(), None);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(
            stderr(&out).contains(message),
            "{extra:?}: {}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(app.post_json()).unwrap(), before);
    }

    let out = portcullis(
        &[
            "add",
            "--model",
            "User",
            "--principal-type",
            "ROLE",
            "--principal-id",
            "$everyone",
            "--permission",
            "DENY",
        ],
        app.path(),
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("built-in model"), "{}", stderr(&out));
}

#[test]
fn add_refuses_a_null_acls_key() {
    let app = TempApp::new();
    let text = std::fs::read_to_string(app.post_json()).unwrap();
    let start = text.find("\"acls\": [").unwrap();
    let end = text[start..].find("\n  ],").unwrap() + start + "\n  ]".len();
    // `acls: null` discards inherited rules; an array would bring them back.
    let nulled = format!("{}\"acls\": null{}", &text[..start], &text[end..]);
    std::fs::write(app.post_json(), &nulled).unwrap();
    let out = portcullis(
        &[
            "add",
            "--model",
            "Post",
            "--principal-type",
            "ROLE",
            "--principal-id",
            "$everyone",
            "--permission",
            "DENY",
        ],
        app.path(),
        None,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`acls` is null"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(app.post_json()).unwrap(), nulled);
}
