//! The reference score table of loopback3-semantics.md §3.4 (verified with
//! `ACL.getMatchingScore`) and the access-type matrix of §3.3.

mod common;

use common::statics;
use portcullis_authz::{access_points, score, AccessRequest, AccessType, AttrMatch};

#[test]
fn reference_table() {
    // Request {model m, property find, accessType READ}; rule {m, *, *}.
    let rows: &[(&str, [i32; 5])] = &[
        ("USER u1", [7551, 7552, 7553, 7554, 7555]),
        ("APP a1", [7519, 7520, 7521, 7522, 7523]),
        ("ROLE custom", [7507, 7508, 7509, 7510, 7511]),
        ("ROLE $owner", [7503, 7504, 7505, 7506, 7507]),
        ("ROLE $related", [7499, 7500, 7501, 7502, 7503]),
        ("ROLE $authenticated", [7495, 7496, 7497, 7498, 7499]),
        ("ROLE $unauthenticated", [7495, 7496, 7497, 7498, 7499]),
        ("ROLE $everyone", [7491, 7492, 7493, 7494, 7495]),
        ("Customer c1", [7455, 7456, 7457, 7458, 7459]),
    ];
    let request = AccessRequest::new("m", "find", &[], AccessType::Read);
    for (principal, expected) in rows {
        for (perm, want) in ["DEFAULT", "ALLOW", "ALARM", "AUDIT", "DENY"]
            .iter()
            .zip(expected)
        {
            let rule = &statics("m", &[&format!("m * * {principal} {perm}")])[0];
            assert_eq!(score(rule, &request).value(), *want, "{principal} {perm}");
        }
        // Missing permission scores as ALLOW.
        let rule = &statics("m", &[&format!("m * * {principal}")])[0];
        assert_eq!(
            score(rule, &request).value(),
            expected[1],
            "{principal} missing"
        );
    }
}

#[test]
fn access_type_matrix() {
    use AccessType::*;
    let requests = [Read, Write, Execute, Replicate];
    let rows = [
        (Any, [Some(2), Some(2), Some(2), Some(2)]),
        (Read, [Some(3), None, None, None]),
        (Write, [None, Some(3), None, Some(3)]),
        (Execute, [Some(3), Some(3), Some(3), Some(3)]),
        (Replicate, [None, None, None, Some(3)]),
    ];
    for (rule, expected) in rows {
        for (req, want) in requests.iter().zip(expected) {
            assert_eq!(
                access_points(rule, *req).map(AttrMatch::points),
                want,
                "rule {rule} request {req}"
            );
        }
    }
    // Request wildcard (programmatic): 1 point unless the rule is exact.
    assert_eq!(access_points(Read, Any), Some(AttrMatch::RequestWildcard));
    assert_eq!(access_points(Execute, Any), Some(AttrMatch::Exact));
    assert_eq!(access_points(Any, Any), Some(AttrMatch::Exact));
}

#[test]
fn property_and_model_points() {
    let aliases = vec!["updateAttributes".to_string()];
    let request = AccessRequest::new("Post", "patchAttributes", &aliases, AccessType::Write);
    let rule = |spec: &str| statics("Post", &[spec]).remove(0);
    // Alias counts as exact for scoring.
    let s = score(
        &rule("Post updateAttributes * ROLE $everyone DENY"),
        &request,
    );
    assert_eq!(s.property, Some(AttrMatch::Exact));
    let s = score(&rule("Post find * ROLE $everyone DENY"), &request);
    assert_eq!(s.property, None);
    assert_eq!(s.value(), -1);
    assert_eq!(s.failed_attribute(), Some("property"));
    let s = score(&rule("* * * ROLE $everyone DENY"), &request);
    assert_eq!(s.model, Some(AttrMatch::RuleWildcard));
    let s = score(&rule("Comment * * ROLE $everyone DENY"), &request);
    assert_eq!(s.failed_attribute(), Some("model"));
}
