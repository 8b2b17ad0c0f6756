//! Compiles the typed filter AST (`where`, `order`) into sea-query conditions and order
//! clauses. Identifiers come only from the compiled schema; every operand is a bound value.

use portcullis_query::{Op, OrderBy, PropRef, Scalar, Where};
use portcullis_schema::{App, Model, PropType};
use sea_query::{
    Alias, Cond, Condition, Expr, ExprTrait, NullOrdering, Order, Query, SelectStatement,
};

use crate::codec::scalar;
use crate::dialect::{Dialect, JsonAs};
use crate::StoreError;

/// Column holding a loose model's undeclared properties as a JSON object.
pub(crate) const EXTRA: &str = "__extra";

/// `"qual"."name"`.
pub(crate) fn col(qual: &str, name: &str) -> Expr {
    Expr::col((Alias::new(qual), Alias::new(name)))
}

/// How a dynamic property is read for `op` (see [`JsonAs`]).
fn json_as(op: &Op) -> JsonAs {
    let by = |s: &Scalar| match s {
        Scalar::Int(_) | Scalar::Float(_) => JsonAs::Number,
        Scalar::Bool(_) => JsonAs::Boolean,
        Scalar::Text(_) | Scalar::Date(_) => JsonAs::String,
        Scalar::Json(_) => JsonAs::Json,
        Scalar::Null => JsonAs::Text,
    };
    let first = |items: &[Scalar]| {
        items
            .iter()
            .find(|s| !matches!(s, Scalar::Null))
            .map_or(JsonAs::Text, by)
    };
    match op {
        Op::Eq(s) | Op::Neq(s) | Op::Gt(s) | Op::Gte(s) | Op::Lt(s) | Op::Lte(s) => by(s),
        Op::Between(a, b) => first(&[a.clone(), b.clone()]),
        Op::Inq(items) | Op::Nin(items) => first(items),
        Op::Like { .. } | Op::Regexp { .. } => JsonAs::Text,
    }
}

fn always(yes: bool) -> Condition {
    Cond::all().add(Expr::cust(if yes { "1=1" } else { "1=0" }))
}

pub(crate) struct Compiler<'a> {
    pub app: &'a App,
    pub d: &'a dyn Dialect,
}

impl Compiler<'_> {
    /// The SQL expression for a property and its declared type (`None` for dynamic ones).
    /// `how`: how a dynamic property is read there.
    pub(crate) fn prop<'m>(
        &self,
        model: &'m Model,
        qual: &str,
        p: &PropRef,
        how: JsonAs,
    ) -> Result<(Expr, Option<&'m PropType>), StoreError> {
        match p {
            PropRef::Declared { name, .. } => match model.property(name) {
                Some(prop) => Ok((col(qual, name), Some(&prop.ty))),
                // Not a column here; for loose models it may still be an extra key.
                None if !model.is_strict() => {
                    Ok((self.d.json_field(col(qual, EXTRA), name, how), None))
                }
                None => Err(StoreError::Invalid(format!(
                    "model `{}` has no property `{name}`",
                    model.name
                ))),
            },
            PropRef::Dynamic { name } => {
                if model.is_strict() {
                    return Err(StoreError::Invalid(format!(
                        "model `{}` has no property `{name}`",
                        model.name
                    )));
                }
                Ok((self.d.json_field(col(qual, EXTRA), name, how), None))
            }
        }
    }

    pub(crate) fn where_(
        &self,
        model: &Model,
        qual: &str,
        w: &Where,
    ) -> Result<Condition, StoreError> {
        Ok(match w {
            Where::And(items) if items.is_empty() => always(true),
            Where::Or(items) if items.is_empty() => always(false),
            Where::And(items) => {
                let mut c = Cond::all();
                for item in items {
                    c = c.add(self.where_(model, qual, item)?);
                }
                c
            }
            Where::Or(items) => {
                let mut c = Cond::any();
                for item in items {
                    c = c.add(self.where_(model, qual, item)?);
                }
                c
            }
            Where::Never => always(false),
            Where::Cond { property, op } => {
                let (e, ty) = self.prop(model, qual, property, json_as(op))?;
                self.op(e, ty, op)
            }
            Where::InSubquery {
                property,
                model: inner_id,
                select,
                filter,
            } => {
                let (e, _) = self.prop(model, qual, property, JsonAs::Text)?;
                let inner =
                    self.app.models.get(inner_id.0).ok_or_else(|| {
                        StoreError::Internal("subquery on an unknown model".into())
                    })?;
                if inner.property(select).is_none() {
                    return Err(StoreError::Internal(format!(
                        "subquery selects unknown property `{select}` of `{}`",
                        inner.name
                    )));
                }
                let mut sub = Query::select();
                sub.expr(col(&inner.table, select))
                    .from(Alias::new(&inner.table))
                    .cond_where(self.where_(inner, &inner.table, filter)?);
                Cond::all().add(e.in_subquery(sub))
            }
        })
    }

    /// A property as text for pattern matching (dynamic properties already read as text).
    fn text(&self, e: Expr, ty: Option<&PropType>) -> Expr {
        match ty {
            None | Some(PropType::String) => e,
            Some(ty) => self.d.as_text(e, ty),
        }
    }

    fn op(&self, e: Expr, ty: Option<&PropType>, op: &Op) -> Condition {
        let v = |s: &Scalar| Expr::val(scalar(ty, s));
        let leaf = |x: Expr| Cond::all().add(x);
        match op {
            Op::Eq(Scalar::Null) => leaf(e.is_null()),
            Op::Eq(s) => leaf(e.eq(v(s))),
            Op::Neq(Scalar::Null) => leaf(e.is_not_null()),
            // Null-safe: a missing value is "not equal" to any value, as in LoopBack.
            Op::Neq(s) => Cond::any().add(e.clone().is_null()).add(e.ne(v(s))),
            Op::Gt(Scalar::Null)
            | Op::Gte(Scalar::Null)
            | Op::Lt(Scalar::Null)
            | Op::Lte(Scalar::Null) => always(false),
            Op::Gt(s) => leaf(e.gt(v(s))),
            Op::Gte(s) => leaf(e.gte(v(s))),
            Op::Lt(s) => leaf(e.lt(v(s))),
            Op::Lte(s) => leaf(e.lte(v(s))),
            Op::Between(a, b) => {
                if matches!(a, Scalar::Null) || matches!(b, Scalar::Null) {
                    always(false)
                } else {
                    leaf(e.between(v(a), v(b)))
                }
            }
            Op::Inq(items) => {
                let has_null = items.iter().any(|s| matches!(s, Scalar::Null));
                let rest: Vec<Expr> = items
                    .iter()
                    .filter(|s| !matches!(s, Scalar::Null))
                    .map(v)
                    .collect();
                let mut c = Cond::any();
                if has_null {
                    c = c.add(e.clone().is_null());
                }
                if !rest.is_empty() {
                    c = c.add(e.is_in(rest));
                } else if !has_null {
                    return always(false);
                }
                c
            }
            Op::Nin(items) => {
                let has_null = items.iter().any(|s| matches!(s, Scalar::Null));
                let rest: Vec<Expr> = items
                    .iter()
                    .filter(|s| !matches!(s, Scalar::Null))
                    .map(v)
                    .collect();
                if rest.is_empty() {
                    return if has_null {
                        leaf(e.is_not_null())
                    } else {
                        always(true)
                    };
                }
                if has_null {
                    Cond::all()
                        .add(e.clone().is_not_null())
                        .add(e.is_not_in(rest))
                } else {
                    Cond::any().add(e.clone().is_null()).add(e.is_not_in(rest))
                }
            }
            Op::Like {
                pattern,
                negated,
                case_insensitive,
            } => {
                let e = self.text(e, ty);
                if *case_insensitive {
                    leaf(self.d.ilike(e, pattern.clone(), *negated))
                } else {
                    leaf(self.d.like(e, pattern.clone(), *negated))
                }
            }
            Op::Regexp {
                pattern,
                case_insensitive,
            } => leaf(
                self.d
                    .regexp(self.text(e, ty), pattern.clone(), *case_insensitive),
            ),
        }
    }

    /// The requested order, then the id so that paging is stable.
    pub(crate) fn order(
        &self,
        sel: &mut SelectStatement,
        model: &Model,
        qual: &str,
        order: &[OrderBy],
    ) -> Result<(), StoreError> {
        let id = model.id_name();
        let mut has_id = false;
        for o in order {
            if matches!(&o.property, PropRef::Declared { name, .. } if name == id) {
                has_id = true;
            }
            let (e, _) = self.prop(model, qual, &o.property, JsonAs::Sort)?;
            let direction = if o.descending {
                Order::Desc
            } else {
                Order::Asc
            };
            // NULLs sort as the smallest value, as in SQLite and LoopBack's memory
            // connector. SQLite does that by default, and spelling it out would stop it
            // from reading the order off an index.
            if self.d.nulls_sort_low() {
                sel.order_by_expr(e, direction);
            } else if o.descending {
                sel.order_by_expr_with_nulls(e, direction, NullOrdering::Last);
            } else {
                sel.order_by_expr_with_nulls(e, direction, NullOrdering::First);
            }
        }
        if !has_id {
            // Ties break by id, in the last key's direction: pages stay stable, and an
            // index on that key (which ends with the row id) serves the whole order, read
            // either way. LoopBack's memory connector leaves ties in id order and its SQL
            // connectors in no order; see docs/compatibility.md.
            let descending = order.last().is_some_and(|o| o.descending);
            sel.order_by_expr(
                col(qual, id),
                if descending { Order::Desc } else { Order::Asc },
            );
        }
        Ok(())
    }
}
