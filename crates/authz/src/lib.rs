//! Pure access-control decisions: LoopBack 3 ACL matching, scoring and resolution, role
//! names, the LoopBack 4 vote combination, and the explanations that go with them.
//!
//! Nothing here does I/O. Facts that need the database (ownership, static role
//! memberships, custom resolvers) are answered by the caller through [`RoleOracle`].

mod rule;

pub use rule::*;
