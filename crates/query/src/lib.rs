//! LoopBack's filter language. Parses `filter` and `where` values, given as JSON or as
//! bracket query strings (`filter[where][created][gte]=…`), into the typed [`ast`],
//! checking every property against the model and coercing every value to its type.
//! Never builds SQL.
//!
//! Modules:
//! - [`ast`]: the typed filter every back end consumes.
//! - [`error`]: [`QueryError`], always an HTTP 400 in LoopBack's envelope.
//! - [`qs`]: query strings decoded with the semantics of Node's `qs` as Express uses it.
//! - [`arg`]: strong-remoting's object-argument rule (JSON strings, `Value is not an object.`).
//! - [`parse`]: the filter object (`order`, `limit`, `skip`, `fields`, `include`).
//! - [`where_clause`]: the `where` language, its operators and the query guards.
//! - [`coerce`]: values to property types, and path ids.
//! - [`date`]: ISO 8601 parsing and JavaScript's `toISOString()` formatting.
//!
//! # Deliberate divergences from LoopBack 3
//!
//! Where LoopBack answers 500, or silently ignores or drops part of a query, this crate
//! refuses it with a 400 that says what is wrong:
//!
//! - an unknown property in `where`, `order` or `fields` on a strict model (LoopBack
//!   matches nothing or ignores it); on a non-strict model an undeclared name must be a
//!   plain identifier and becomes [`PropRef::Dynamic`];
//! - a hidden property (e.g. `password`) in `where` or `order` (LoopBack silently removes
//!   it from the query, which silently widens the result);
//! - an unknown operator (LoopBack compares the operator object as a value), more than one
//!   operator in one condition (LoopBack connectors disagree on which one wins), `nor`,
//!   and `near` (no geo support);
//! - a relation name or a dotted path in `where` or `order`;
//! - an unknown relation in `include` (500 in LoopBack), include nesting deeper than 5;
//! - an invalid date or regular expression in `where` (500 in LoopBack); regular
//!   expressions are compiled with the linear-time `regex` crate, so look-around and
//!   back-references are refused, and patterns are bounded to 1000 characters;
//! - `limit: 0` and `limit`/`skip` above 1 000 000 000 (LoopBack reads a falsy limit as
//!   "no limit" and has no upper bound);
//! - an `order` value that is neither a string nor an array, and an order token with more
//!   than two words (LoopBack ignores them);
//! - a date-time without a zone is read as UTC, not as the server's local time.
//!
//! And where LoopBack's behaviour is an accident rather than a rule, we pick the plain
//! reading: a `regexp` string is in `/…/flags` form only when it starts with `/` (so
//! `"^a/b"` is a pattern, where juggler reads `b` as a flag and fails); a query-string
//! escape that is not valid UTF-8 is decoded lossily (`qs` keeps the raw escapes).
//!
//! Empty lists: `inq: []` is [`Where::Never`]; `nin: []`, `and: []` and `{}` are no
//! condition; `or: []` is [`Where::Never`]. A `fields` selection that resolves to no
//! declared property is `None` (every property).

pub mod arg;
pub mod ast;
pub mod coerce;
pub mod date;
pub mod error;
pub mod parse;
pub mod qs;
pub mod where_clause;

pub use arg::object_arg;
pub use ast::*;
pub use coerce::{coerce_id, coerce_scalar, parse_number};
pub use date::{format_date, parse_date};
pub use error::QueryError;
pub use parse::parse_filter;
pub use qs::parse_query_string;
pub use where_clause::parse_where;
