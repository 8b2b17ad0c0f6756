//! Pure access-control decisions: LoopBack 3 ACL matching, scoring and resolution, role
//! names, the LoopBack 4 vote combination, and the explanations that go with them.
//!
//! Nothing here does I/O. Facts that need the database (ownership, static role
//! memberships, custom resolvers) are answered by the caller through [`RoleOracle`], or
//! step by step through the [`Run`] state machine when the answers are async.
//!
//! | module | owns |
//! |---|---|
//! | `rule` | the ACL vocabulary ([`Rule`], [`AccessType`], [`Permission`]…) |
//! | `role` | principals and the built-in role names |
//! | `score` | LoopBack's matching score |
//! | `engine` | compiled rule indexes, candidate collection, lazy resolution |
//! | `decision` | the [`Decision`], its trail and explanation, the denial status |
//! | `vote` | the LoopBack 4 decision matrix |

mod decision;
mod engine;
mod role;
mod rule;
mod score;
mod vote;

pub use decision::{denial_status, Decision, PrincipalCheck, RuleOrigin, TrailEntry};
pub use engine::{db_prefetch, DbRules, Engine, RoleOracle, Run, Step};
pub use role::{
    builtin_role_held, is_authenticated, Principal, RoleClass, AUTHENTICATED, EVERYONE, OWNER,
    RELATED, UNAUTHENTICATED,
};
pub use rule::*;
pub use score::{
    access_points, model_points, permission_order, property_points, role_weight, rule_model, score,
    score_static, AccessRequest, AttrMatch, Score, ALL,
};
pub use vote::{combine, Combined, Precedence, Verdict, Vote};
