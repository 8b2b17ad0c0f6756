//! The LoopBack 4 decision matrix (`@loopback/authorization`): combining the votes of
//! voters and authorizers under a precedence and a default decision, with the same
//! short-circuits as the real code (lb4-authorization.md §6.1–6.2).
//!
//! Votes are taken from an iterator and consumed one at a time, so an iterator that calls
//! a voter per item (`voters.iter().map(|v| v.vote(ctx))`) really stops calling voters
//! where LoopBack stops.

use std::fmt;
use std::ops::Range;

/// One voter's opinion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Vote {
    Allow,
    Deny,
    Abstain,
}

/// Which explicit vote ends the evaluation early. LoopBack's default is `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum Precedence {
    Allow,
    #[default]
    Deny,
}

/// An allow/deny outcome (also the type of `defaultDecision`, which defaults to `Deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum Verdict {
    Allow,
    #[default]
    Deny,
}

impl fmt::Display for Vote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
            Self::Abstain => "Abstain",
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
        })
    }
}

/// The result of [`combine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    pub verdict: Verdict,
    /// Index of the vote that set the verdict (the last explicit vote taken), `None` when
    /// every vote taken abstained and the default decision applies.
    pub deciding: Option<usize>,
    /// How many votes were taken. Voters at index `called..` were not called.
    pub called: usize,
    /// The loop stopped early on a vote matching the precedence.
    pub short_circuited: bool,
    /// Every vote taken, in order.
    pub votes: Vec<Vote>,
}

impl Combined {
    /// The voters that were not called, given how many there were.
    pub fn not_called(&self, total: usize) -> Range<usize> {
        self.called.min(total)..total
    }

    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

impl fmt::Display for Combined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict)?;
        match self.deciding {
            Some(i) => write!(
                f,
                " (vote #{} {})",
                i + 1,
                self.votes.get(i).map_or(Vote::Abstain, |v| *v)
            )?,
            None => write!(f, " (default decision: every vote abstained)")?,
        }
        if self.short_circuited {
            write!(f, "; voters after #{} were not called", self.called)?;
        }
        Ok(())
    }
}

/// Combines votes as `AuthorizationInterceptor` does: the verdict starts as
/// `default_decision`; each explicit vote replaces it; a Deny under `Precedence::Deny` or
/// an Allow under `Precedence::Allow` stops the loop at once.
pub fn combine<I>(votes: I, precedence: Precedence, default_decision: Verdict) -> Combined
where
    I: IntoIterator<Item = Vote>,
{
    let mut verdict = default_decision;
    let mut deciding = None;
    let mut taken = Vec::new();
    let mut short_circuited = false;
    for (i, vote) in votes.into_iter().enumerate() {
        taken.push(vote);
        let explicit = match vote {
            Vote::Allow => Verdict::Allow,
            Vote::Deny => Verdict::Deny,
            Vote::Abstain => continue,
        };
        verdict = explicit;
        deciding = Some(i);
        let stops = matches!(
            (explicit, precedence),
            (Verdict::Deny, Precedence::Deny) | (Verdict::Allow, Precedence::Allow)
        );
        if stops {
            short_circuited = true;
            break;
        }
    }
    Combined {
        verdict,
        deciding,
        called: taken.len(),
        short_circuited,
        votes: taken,
    }
}
