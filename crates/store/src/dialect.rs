//! The seam between dialect-neutral query building and one SQL engine: statement rendering,
//! column types, and the few expressions that have no portable spelling (regexp,
//! case-insensitive LIKE, reading a key of the loose-model JSON column). A PostgreSQL back
//! end implements this trait; everything else in the crate only sees `&dyn Dialect`.

use portcullis_schema::PropType;
use sea_query::{
    BinOper, DeleteStatement, Expr, ExprTrait, Func, InsertStatement, SelectStatement,
    SqliteQueryBuilder, UpdateStatement, Values,
};

pub(crate) trait Dialect: Send + Sync {
    fn select(&self, q: &SelectStatement) -> (String, Values);
    fn insert(&self, q: &InsertStatement) -> (String, Values);
    fn update(&self, q: &UpdateStatement) -> (String, Values);
    fn delete(&self, q: &DeleteStatement) -> (String, Values);
    /// The value of key `name` inside the JSON object `extra`, as a comparable SQL value.
    fn json_field(&self, extra: Expr, name: &str) -> Expr;
    /// `extra` with key `name` set to the JSON text `json`, or removed when `None`.
    fn json_set(&self, extra: Expr, name: &str, json: Option<String>) -> Expr;
    fn regexp(&self, value: Expr, pattern: String) -> Expr;
    fn ilike(&self, value: Expr, pattern: String, negated: bool) -> Expr;
    fn column_type(&self, ty: &PropType) -> &'static str;
    /// Column definition (after the name) of a database-generated number id.
    fn generated_id(&self) -> &'static str;
}

pub(crate) struct Sqlite;

/// JSON path of one top-level key; quoted so that dots or brackets in names stay literal.
fn json_path(name: &str) -> String {
    format!("$.\"{name}\"")
}

impl Dialect for Sqlite {
    fn select(&self, q: &SelectStatement) -> (String, Values) {
        q.build(SqliteQueryBuilder)
    }
    fn insert(&self, q: &InsertStatement) -> (String, Values) {
        q.build(SqliteQueryBuilder)
    }
    fn update(&self, q: &UpdateStatement) -> (String, Values) {
        q.build(SqliteQueryBuilder)
    }
    fn delete(&self, q: &DeleteStatement) -> (String, Values) {
        q.build(SqliteQueryBuilder)
    }
    fn json_field(&self, extra: Expr, name: &str) -> Expr {
        Expr::cust_with_exprs("json_extract(?, ?)", [extra, Expr::val(json_path(name))])
    }
    fn json_set(&self, extra: Expr, name: &str, json: Option<String>) -> Expr {
        let base = Expr::cust_with_exprs("COALESCE(?, '{}')", [extra]);
        match json {
            Some(text) => Expr::cust_with_exprs(
                "json_set(?, ?, json(?))",
                [base, Expr::val(json_path(name)), Expr::val(text)],
            ),
            None => Expr::cust_with_exprs("json_remove(?, ?)", [base, Expr::val(json_path(name))]),
        }
    }
    fn regexp(&self, value: Expr, pattern: String) -> Expr {
        // Registered per connection in `sqlite::configure`.
        Expr::cust_with_exprs("regexp(?, ?)", [Expr::val(pattern), value])
    }
    fn ilike(&self, value: Expr, pattern: String, negated: bool) -> Expr {
        let lhs = Expr::from(Func::lower(value));
        let rhs = Expr::from(Func::lower(Expr::val(pattern)));
        let op = if negated {
            BinOper::NotLike
        } else {
            BinOper::Like
        };
        lhs.binary(op, rhs)
    }
    fn column_type(&self, ty: &PropType) -> &'static str {
        match ty {
            PropType::String | PropType::Date => "TEXT",
            PropType::Number => "NUMERIC",
            PropType::Boolean => "INTEGER",
            PropType::Object | PropType::Array(_) | PropType::Any => "TEXT",
        }
    }
    fn generated_id(&self) -> &'static str {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    }
}
