//! LoopBack 4-style authorization for methods with `authorize` metadata: the LoopBack 3
//! ACL decision becomes one vote, then the method's voters, then the default role-based
//! authorizer, combined under the app's `precedence` and `defaultDecision`.
//!
//! Methods without metadata keep LoopBack 3's ACL semantics exactly. With metadata, the
//! ACL vote is ALLOW → Allow, DENY → Deny, and "no rule decided" → Abstain, so with the
//! default options (precedence Deny, default Deny) a voter can restrict what the ACLs
//! allow but never open what they deny. A voter that fails or panics votes Deny (LoopBack 4
//! lets the error escape as a 500).

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_authz::{combine, Decision, Permission, Precedence, Principal, Verdict, Vote};
use serde_json::{Map, Value};

use crate::access::BoxFuture;
use crate::remote::AuthorizeMeta;

/// What a voter sees.
#[derive(Debug, Clone)]
pub struct VoterContext {
    pub model: String,
    pub method: String,
    /// `metadata.resource`, else `<Model>.<method>`.
    pub resource: String,
    pub principals: Vec<Principal>,
    pub user_id: Option<String>,
    /// The roles among `allowedRoles` and `deniedRoles` that the caller holds.
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// The invocation's arguments (custom methods) or body (built-in methods).
    pub args: Map<String, Value>,
    /// The URL `:id`, if any.
    pub instance_id: Option<String>,
}

pub type VoterFn = dyn Fn(VoterContext) -> BoxFuture<'static, Result<Vote, String>> + Send + Sync;

/// `authorization` in `server/config.json`: `{"precedence": "DENY"|"ALLOW",
/// "defaultDecision": "DENY"|"ALLOW"}` (both default to DENY, as in LoopBack 4).
#[derive(Debug, Clone, Copy, Default)]
pub struct MatrixOptions {
    pub precedence: Precedence,
    pub default_decision: Verdict,
}

impl MatrixOptions {
    pub fn from_config(raw: &Map<String, Value>) -> Self {
        let mut o = MatrixOptions::default();
        if let Some(a) = raw.get("authorization").and_then(Value::as_object) {
            if a.get("precedence")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("allow"))
            {
                o.precedence = Precedence::Allow;
            }
            if a.get("defaultDecision")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("allow"))
            {
                o.default_decision = Verdict::Allow;
            }
        }
        o
    }
}

/// One vote in the trail.
#[derive(Debug, Clone)]
pub struct CastVote {
    pub voter: String,
    pub vote: Vote,
    pub note: Option<String>,
}

/// The outcome of the matrix.
#[derive(Debug, Clone)]
pub struct MatrixDecision {
    pub allowed: bool,
    pub votes: Vec<CastVote>,
    /// Voters not called because an earlier vote short-circuited.
    pub skipped: Vec<String>,
}

impl std::fmt::Display for MatrixDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "decision matrix: {}",
            if self.allowed { "allowed" } else { "denied" }
        )?;
        for v in &self.votes {
            match &v.note {
                Some(n) => writeln!(f, "  vote {}: {} ({n})", v.voter, v.vote)?,
                None => writeln!(f, "  vote {}: {}", v.voter, v.vote)?,
            }
        }
        for s in &self.skipped {
            writeln!(f, "  not called (short-circuit): {s}")?;
        }
        Ok(())
    }
}

/// The ACL decision as a vote: an explicit ALLOW or DENY votes; DEFAULT abstains.
pub fn acl_vote(decision: Option<&Decision>) -> (Vote, String) {
    match decision {
        None => (Vote::Abstain, "access control is off".into()),
        Some(d) if d.scope_denied => (Vote::Deny, "denied by scope".into()),
        Some(d) => match d.resolved {
            Permission::Deny => (Vote::Deny, "an ACL rule denies".into()),
            Permission::Default => (Vote::Abstain, "no ACL rule decided".into()),
            _ => (Vote::Allow, "an ACL rule allows".into()),
        },
    }
}

/// The default role-based authorizer: a held denied role → Deny; a held allowed role →
/// Allow; allowed roles none of which is held → Deny; no roles named → Abstain.
pub fn role_vote(meta: &AuthorizeMeta, held: &[String]) -> Vote {
    if meta.denied_roles.iter().any(|r| held.contains(r)) {
        Vote::Deny
    } else if meta.allowed_roles.iter().any(|r| held.contains(r)) {
        Vote::Allow
    } else if !meta.allowed_roles.is_empty() {
        Vote::Deny
    } else {
        Vote::Abstain
    }
}

/// Runs the voters in order with LoopBack 4's short-circuits and combines every vote.
pub async fn run_matrix(
    first: (Vote, String),
    meta: &AuthorizeMeta,
    voters: &HashMap<String, Arc<VoterFn>>,
    ctx: VoterContext,
    options: MatrixOptions,
) -> MatrixDecision {
    let mut votes = vec![CastVote {
        voter: "acl".into(),
        vote: first.0,
        note: Some(first.1),
    }];
    let stops = |v: Vote| {
        matches!(
            (v, options.precedence),
            (Vote::Deny, Precedence::Deny) | (Vote::Allow, Precedence::Allow)
        )
    };
    let mut pending: Vec<String> = meta.voters.clone();
    pending.push("role-based authorizer".into());
    let mut skipped = Vec::new();
    let mut stopped = stops(first.0);
    for name in pending {
        if stopped {
            skipped.push(name);
            continue;
        }
        let cast = if name == "role-based authorizer" {
            CastVote {
                vote: role_vote(meta, &ctx.roles),
                note: Some(format!("holds {:?}", ctx.roles)),
                voter: name,
            }
        } else {
            match voters.get(&name) {
                None => CastVote {
                    voter: name.clone(),
                    vote: Vote::Deny,
                    note: Some("no voter registered under this name".into()),
                },
                Some(voter) => {
                    // Spawned so a panicking voter is caught and denies.
                    let fut = voter(ctx.clone());
                    match tokio::spawn(fut).await {
                        Ok(Ok(v)) => CastVote {
                            voter: name,
                            vote: v,
                            note: None,
                        },
                        Ok(Err(e)) => {
                            tracing::error!(target: "portcullis::security", voter = %name, error = %e, "voter failed; counted as Deny");
                            CastVote {
                                voter: name,
                                vote: Vote::Deny,
                                note: Some(format!("error: {e}")),
                            }
                        }
                        Err(e) => {
                            tracing::error!(target: "portcullis::security", voter = %name, error = %e, "voter panicked; counted as Deny");
                            CastVote {
                                voter: name,
                                vote: Vote::Deny,
                                note: Some("panicked".into()),
                            }
                        }
                    }
                }
            }
        };
        stopped = stops(cast.vote);
        votes.push(cast);
    }
    let combined = combine(
        votes.iter().map(|v| v.vote),
        options.precedence,
        options.default_decision,
    );
    MatrixDecision {
        allowed: combined.verdict == Verdict::Allow,
        votes,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_authorizer_follows_the_documented_rule() {
        let meta = AuthorizeMeta {
            allowed_roles: vec!["admin".into(), "$owner".into()],
            denied_roles: vec!["banned".into()],
            ..Default::default()
        };
        assert_eq!(role_vote(&meta, &["admin".into()]), Vote::Allow);
        assert_eq!(
            role_vote(&meta, &["admin".into(), "banned".into()]),
            Vote::Deny
        );
        assert_eq!(role_vote(&meta, &[]), Vote::Deny);
        assert_eq!(role_vote(&AuthorizeMeta::default(), &[]), Vote::Abstain);
    }
}
