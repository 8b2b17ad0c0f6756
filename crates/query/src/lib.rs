//! LoopBack's filter language. Parses `filter` and `where` values, given as JSON or as
//! bracket query strings (`filter[where][created][gte]=…`), into the typed [`ast`],
//! checking every property against the model and coercing every value to its type.
//! Never builds SQL.

pub mod ast;

pub use ast::*;
