//! The LoopBack 4 decision matrix (lb4-authorization.md §6.3) and its acceptance-test
//! extras, plus the short-circuit bookkeeping.

use portcullis_authz::{combine, Precedence, Verdict, Vote};
use Vote::{Abstain, Allow, Deny};

/// `(votes, precedence, default decision, expected)`; `None` options mean "any": every
/// combination is tried.
type Row = ([Vote; 3], Option<Precedence>, Option<Verdict>, Verdict);

#[test]
fn documented_matrix() {
    let rows: [Row; 10] = [
        ([Deny, Deny, Deny], None, None, Verdict::Deny),
        ([Allow, Allow, Allow], None, None, Verdict::Allow),
        ([Abstain, Allow, Abstain], None, None, Verdict::Allow),
        ([Abstain, Deny, Abstain], None, None, Verdict::Deny),
        (
            [Deny, Allow, Abstain],
            Some(Precedence::Deny),
            None,
            Verdict::Deny,
        ),
        (
            [Deny, Allow, Abstain],
            Some(Precedence::Allow),
            None,
            Verdict::Allow,
        ),
        (
            [Allow, Abstain, Deny],
            Some(Precedence::Deny),
            None,
            Verdict::Deny,
        ),
        (
            [Allow, Abstain, Deny],
            Some(Precedence::Allow),
            None,
            Verdict::Allow,
        ),
        (
            [Abstain, Abstain, Abstain],
            None,
            Some(Verdict::Deny),
            Verdict::Deny,
        ),
        (
            [Abstain, Abstain, Abstain],
            None,
            Some(Verdict::Allow),
            Verdict::Allow,
        ),
    ];
    for (votes, precedence, default, expected) in rows {
        let precedences = precedence.map_or(vec![Precedence::Allow, Precedence::Deny], |p| vec![p]);
        let defaults = default.map_or(vec![Verdict::Allow, Verdict::Deny], |d| vec![d]);
        for p in &precedences {
            for d in &defaults {
                let got = combine(votes, *p, *d);
                assert_eq!(got.verdict, expected, "{votes:?} {p:?} {d:?}");
            }
        }
    }
}

#[test]
fn acceptance_extras_with_default_options() {
    // `{}`: precedence Deny, defaultDecision Deny.
    let (p, d) = (Precedence::default(), Verdict::default());
    assert_eq!(combine([Deny, Allow, Abstain], p, d).verdict, Verdict::Deny);
    assert_eq!(combine([Allow, Abstain, Deny], p, d).verdict, Verdict::Deny);
    assert_eq!(
        combine([Abstain, Abstain, Abstain], p, d).verdict,
        Verdict::Deny
    );
    // The "any options" rows repeated with `{}`.
    assert_eq!(combine([Deny, Deny, Deny], p, d).verdict, Verdict::Deny);
    assert_eq!(combine([Allow, Allow, Allow], p, d).verdict, Verdict::Allow);
    assert_eq!(
        combine([Abstain, Allow, Abstain], p, d).verdict,
        Verdict::Allow
    );
    assert_eq!(
        combine([Abstain, Deny, Abstain], p, d).verdict,
        Verdict::Deny
    );
    // `defaultMetadata: {}` with `defaultDecision: Allow`.
    assert_eq!(
        combine([Abstain, Abstain, Abstain], p, Verdict::Allow).verdict,
        Verdict::Allow
    );
    // No voters at all: the default decision.
    let none = combine([], p, d);
    assert_eq!(
        (none.verdict, none.deciding, none.called),
        (Verdict::Deny, None, 0)
    );
}

#[test]
fn short_circuit_bookkeeping() {
    // Deny precedence: the first Deny stops the loop; the third voter is never called.
    let mut calls = 0;
    let votes = [Allow, Deny, Allow];
    let got = combine(
        votes.iter().map(|v| {
            calls += 1;
            *v
        }),
        Precedence::Deny,
        Verdict::Deny,
    );
    assert_eq!(calls, 2);
    assert_eq!(got.verdict, Verdict::Deny);
    assert_eq!(got.deciding, Some(1));
    assert!(got.short_circuited);
    assert_eq!(got.not_called(3), 2..3);
    assert_eq!(
        got.to_string(),
        "Deny (vote #2 Deny); voters after #2 were not called"
    );

    // Allow precedence: an earlier Deny is provisional.
    let got = combine(
        [Deny, Abstain, Allow, Deny],
        Precedence::Allow,
        Verdict::Deny,
    );
    assert_eq!(
        (got.verdict, got.deciding, got.called),
        (Verdict::Allow, Some(2), 3)
    );
    assert_eq!(got.not_called(4), 3..4);

    // Deny precedence, Allow then nothing: the last explicit vote stands, all called.
    let got = combine([Allow, Abstain, Abstain], Precedence::Deny, Verdict::Deny);
    assert_eq!(
        (got.verdict, got.deciding, got.called),
        (Verdict::Allow, Some(0), 3)
    );
    assert!(!got.short_circuited);
    assert!(got.not_called(3).is_empty());

    // All abstain: default decision, no deciding vote.
    let got = combine([Abstain, Abstain], Precedence::Allow, Verdict::Allow);
    assert_eq!((got.verdict, got.deciding), (Verdict::Allow, None));
    assert_eq!(
        got.to_string(),
        "Allow (default decision: every vote abstained)"
    );
}
