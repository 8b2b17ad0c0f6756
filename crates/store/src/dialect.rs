//! The seam between dialect-neutral query building and one SQL engine: statement rendering,
//! column types, the DDL details autoupdate needs, and the few expressions that have no
//! portable spelling (regexp, LIKE flavours, reading or writing a key of the loose-model JSON
//! column). Everything else in the crate only sees `&dyn Dialect`.

use portcullis_schema::PropType;
use sea_query::{
    BinOper, DeleteStatement, Expr, ExprTrait, Func, InsertStatement, PostgresQueryBuilder,
    SelectStatement, SqliteQueryBuilder, UpdateStatement, Value, Values,
};

/// How a loose-model JSON value is read where it is used. Comparisons read it by the
/// operand's type, and a value of another JSON type reads as NULL there, so that `"x" > 4` or
/// `10 = "10"` match nothing on either engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonAs {
    /// Compared with a number.
    Number,
    /// Compared with a boolean.
    Boolean,
    /// Compared with a string (or a date, which loose models hold as text).
    String,
    /// Any scalar as text: pattern matching, and `IS NULL`.
    Text,
    /// Compared with an object or array.
    Json,
    /// Sorted by (numbers numerically).
    Sort,
}

pub(crate) trait Dialect: Send + Sync {
    fn select(&self, q: &SelectStatement) -> (String, Values);
    /// What turns a statement into its query plan.
    fn explain_prefix(&self) -> &'static str;
    /// Whether NULLs already sort as the smallest value (no NULLS FIRST/LAST needed).
    fn nulls_sort_low(&self) -> bool;
    fn insert(&self, q: &InsertStatement) -> (String, Values);
    fn update(&self, q: &UpdateStatement) -> (String, Values);
    fn delete(&self, q: &DeleteStatement) -> (String, Values);
    /// The value of key `name` inside the JSON object `extra`, read as `how`.
    fn json_field(&self, extra: Expr, name: &str, how: JsonAs) -> Expr;
    /// `extra` with key `name` set to the JSON text `json`, or removed when `None`.
    fn json_set(&self, extra: Expr, name: &str, json: Option<String>) -> Expr;
    /// A column of type `ty` as text, for pattern matching, in the text form SQLite stores
    /// (dates as `toISOString()`, booleans as 0/1).
    fn as_text(&self, value: Expr, ty: &PropType) -> Expr;
    /// Case-sensitive SQL LIKE (`%`, `_`, no escape character).
    fn like(&self, value: Expr, pattern: String, negated: bool) -> Expr;
    fn ilike(&self, value: Expr, pattern: String, negated: bool) -> Expr;
    /// A pattern already validated by the `regex` crate.
    fn regexp(&self, value: Expr, pattern: String, case_insensitive: bool) -> Expr;
    fn column_type(&self, ty: &PropType) -> &'static str;
    /// Column definition (after the name) of a database-generated number id.
    fn generated_id(&self) -> &'static str;
    /// `ALTER TABLE t <this> <column definition>`.
    fn add_column(&self) -> &'static str;
    /// A query listing the column names of `table` (no rows when it does not exist).
    fn columns_query(&self, table: &str) -> (String, Values);
    /// After a row was stored with the explicit generated id `id`: a statement that moves the
    /// id generator past it, where the engine does not do that by itself.
    fn sync_sequence(&self, table: &str, column: &str, id: i64) -> Option<(String, Values)>;
}

fn like_op(negated: bool) -> BinOper {
    if negated {
        BinOper::NotLike
    } else {
        BinOper::Like
    }
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
    fn explain_prefix(&self) -> &'static str {
        "EXPLAIN QUERY PLAN"
    }
    fn nulls_sort_low(&self) -> bool {
        true
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
    fn json_field(&self, extra: Expr, name: &str, how: JsonAs) -> Expr {
        // json_extract yields SQL values of the JSON's own type (objects as JSON text).
        let typed = |types: &'static str| {
            Expr::cust_with_exprs(
                format!("(CASE WHEN json_type(?, ?) IN ({types}) THEN json_extract(?, ?) END)"),
                [
                    extra.clone(),
                    Expr::val(json_path(name)),
                    extra.clone(),
                    Expr::val(json_path(name)),
                ],
            )
        };
        match how {
            JsonAs::Number => typed("'integer', 'real'"),
            JsonAs::Boolean => typed("'true', 'false'"),
            JsonAs::String => typed("'text'"),
            JsonAs::Text | JsonAs::Json | JsonAs::Sort => {
                Expr::cust_with_exprs("json_extract(?, ?)", [extra, Expr::val(json_path(name))])
            }
        }
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
    fn as_text(&self, value: Expr, _ty: &PropType) -> Expr {
        // SQLite's LIKE and the registered regexp take any value as text already.
        value
    }
    fn like(&self, value: Expr, pattern: String, negated: bool) -> Expr {
        // Case-sensitive through `PRAGMA case_sensitive_like` (see `sqlite::configure`).
        value.binary(like_op(negated), Expr::val(pattern))
    }
    fn ilike(&self, value: Expr, pattern: String, negated: bool) -> Expr {
        let lhs = Expr::from(Func::lower(value));
        let rhs = Expr::from(Func::lower(Expr::val(pattern)));
        lhs.binary(like_op(negated), rhs)
    }
    fn regexp(&self, value: Expr, pattern: String, case_insensitive: bool) -> Expr {
        let pattern = if case_insensitive {
            format!("(?i){pattern}")
        } else {
            pattern
        };
        // Registered per connection in `sqlite::configure`.
        Expr::cust_with_exprs("regexp(?, ?)", [Expr::val(pattern), value])
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
    fn add_column(&self) -> &'static str {
        "ADD COLUMN"
    }
    fn columns_query(&self, table: &str) -> (String, Values) {
        (
            "SELECT name FROM pragma_table_info(?)".into(),
            Values(vec![Value::String(Some(table.to_string()))]),
        )
    }
    fn sync_sequence(&self, _table: &str, _column: &str, _id: i64) -> Option<(String, Values)> {
        // AUTOINCREMENT keeps `sqlite_sequence` at the largest id ever stored.
        None
    }
}

pub(crate) struct Postgres;

impl Dialect for Postgres {
    fn select(&self, q: &SelectStatement) -> (String, Values) {
        q.build(PostgresQueryBuilder)
    }
    fn explain_prefix(&self) -> &'static str {
        "EXPLAIN"
    }
    fn nulls_sort_low(&self) -> bool {
        false
    }
    fn insert(&self, q: &InsertStatement) -> (String, Values) {
        q.build(PostgresQueryBuilder)
    }
    fn update(&self, q: &UpdateStatement) -> (String, Values) {
        q.build(PostgresQueryBuilder)
    }
    fn delete(&self, q: &DeleteStatement) -> (String, Values) {
        q.build(PostgresQueryBuilder)
    }
    fn json_field(&self, extra: Expr, name: &str, how: JsonAs) -> Expr {
        let key = || Expr::val(name.to_string());
        let typed = |json_type: &'static str, sql_type: &'static str| {
            Expr::cust_with_exprs(
                format!(
                    "(CASE WHEN jsonb_typeof($1 -> $2::text) = '{json_type}' THEN ($1 ->> $2::text)::{sql_type} END)"
                ),
                [extra.clone(), key()],
            )
        };
        match how {
            JsonAs::Number => typed("number", "double precision"),
            JsonAs::Boolean => typed("boolean", "boolean"),
            JsonAs::String => typed("string", "text"),
            JsonAs::Text => Expr::cust_with_exprs("($1 ->> $2::text)", [extra.clone(), key()]),
            // jsonb's own equality and order (numbers numerically).
            JsonAs::Json | JsonAs::Sort => {
                Expr::cust_with_exprs("($1 -> $2::text)", [extra.clone(), key()])
            }
        }
    }
    fn json_set(&self, extra: Expr, name: &str, json: Option<String>) -> Expr {
        let key = Expr::val(name.to_string());
        match json {
            Some(text) => Expr::cust_with_exprs(
                "(COALESCE($1, '{}'::jsonb) || jsonb_build_object($2::text, $3::jsonb))",
                [extra, key, Expr::val(text)],
            ),
            None => Expr::cust_with_exprs("(COALESCE($1, '{}'::jsonb) - $2::text)", [extra, key]),
        }
    }
    fn as_text(&self, value: Expr, ty: &PropType) -> Expr {
        match ty {
            PropType::Date => Expr::cust_with_exprs(
                r#"to_char(($1) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#,
                [value],
            ),
            PropType::Boolean => {
                Expr::cust_with_exprs("(CASE WHEN $1 THEN '1' WHEN NOT $1 THEN '0' END)", [value])
            }
            _ => Expr::cust_with_exprs("($1)::text", [value]),
        }
    }
    fn like(&self, value: Expr, pattern: String, negated: bool) -> Expr {
        let op = if negated { "NOT LIKE" } else { "LIKE" };
        // ESCAPE '': a backslash is an ordinary character, as in SQLite.
        Expr::cust_with_exprs(
            format!("($1 {op} $2 ESCAPE '')"),
            [value, Expr::val(pattern)],
        )
    }
    fn ilike(&self, value: Expr, pattern: String, negated: bool) -> Expr {
        let op = if negated { "NOT ILIKE" } else { "ILIKE" };
        Expr::cust_with_exprs(
            format!("($1 {op} $2 ESCAPE '')"),
            [value, Expr::val(pattern)],
        )
    }
    fn regexp(&self, value: Expr, pattern: String, case_insensitive: bool) -> Expr {
        // PostgreSQL's advanced regular expressions; the pattern is passed as written.
        let op = if case_insensitive { "~*" } else { "~" };
        Expr::cust_with_exprs(format!("($1 {op} $2)"), [value, Expr::val(pattern)])
    }
    fn column_type(&self, ty: &PropType) -> &'static str {
        match ty {
            // Byte order, as SQLite compares text.
            PropType::String => "text COLLATE \"C\"",
            PropType::Date => "timestamptz",
            PropType::Number => "double precision",
            PropType::Boolean => "boolean",
            PropType::Object | PropType::Array(_) | PropType::Any => "jsonb",
        }
    }
    fn generated_id(&self) -> &'static str {
        "bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    }
    fn add_column(&self) -> &'static str {
        "ADD COLUMN IF NOT EXISTS"
    }
    fn columns_query(&self, table: &str) -> (String, Values) {
        (
            "SELECT attname::text FROM pg_catalog.pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped"
                .into(),
            Values(vec![Value::String(Some(crate::migrate::quote(table)))]),
        )
    }
    fn sync_sequence(&self, table: &str, column: &str, id: i64) -> Option<(String, Values)> {
        // Identity columns do not follow explicit ids; move the sequence forward (never back).
        Some((
            "SELECT setval(q.s, $1) FROM (SELECT pg_get_serial_sequence($2, $3)::regclass AS s) q \
             WHERE q.s IS NOT NULL AND $1 > COALESCE(pg_sequence_last_value(q.s), 0)"
                .into(),
            Values(vec![
                Value::BigInt(Some(id)),
                Value::String(Some(crate::migrate::quote(table))),
                Value::String(Some(column.to_string())),
            ]),
        ))
    }
}
