//! Every store operation as synchronous code over one connection (or transaction) of either
//! engine, seen through [`Conn`]: reads with batched includes, and the write methods. The
//! caller picks the connection and owns the transaction boundary.

use std::collections::HashMap;

use portcullis_query::{Filter, Include, Op, PropRef, Scalar, Where};
use portcullis_schema::{App, DefaultFn, Model, ModelId, RelationKind};
use rusqlite::types::Value as SqlValue;
use sea_query::{Alias, Cond, Expr, ExprTrait, JoinType, Query, SelectStatement, Values};
use serde_json::Value;

use crate::codec::{decode, encode, json_scalar, key_of};
use crate::compile::{col, Compiler, EXTRA};
use crate::dates::now_iso;
use crate::dialect::Dialect;
use crate::outbox::RowChange;
use crate::{Record, StoreError};

/// Largest number of keys in one `IN (...)` of an include query.
const CHUNK: usize = 500;
/// Alias of the through table in hasManyThrough includes (the target may share its name).
const THROUGH: &str = "__through";

/// One connection or open transaction of either engine. Rows come back as cells of
/// rusqlite's [`SqlValue`] (null, integer, real, text), the neutral form both engines convert
/// their values to: booleans as 0/1, dates as milliseconds since the epoch, JSON as text.
pub(crate) trait Conn {
    fn query(&self, sql: &str, values: Values) -> Result<Vec<Vec<SqlValue>>, StoreError>;
    fn exec(&self, sql: &str, values: Values) -> Result<u64, StoreError>;
    /// Statements without parameters (DDL), not cached.
    fn batch(&self, sql: &str) -> Result<(), StoreError>;
}

pub(crate) struct Ops<'a> {
    pub app: &'a App,
    pub d: &'a dyn Dialect,
}

/// Which columns a select reads, in order; the decoded record follows model order.
struct Cols {
    props: Vec<usize>,
    extra: bool,
}

/// How related rows are tied to their parents in an include query.
enum Link<'a> {
    /// The target's own column holds the parent key.
    Direct(&'a str),
    /// A through model row links parent (`fk`) and target (`kt`).
    Through {
        through: &'a Model,
        fk: &'a str,
        kt: &'a str,
    },
}

impl<'a> Ops<'a> {
    fn compiler(&self) -> Compiler<'a> {
        Compiler {
            app: self.app,
            d: self.d,
        }
    }

    pub(crate) fn model(&self, id: ModelId) -> Result<&'a Model, StoreError> {
        self.app
            .models
            .get(id.0)
            .ok_or_else(|| StoreError::Internal(format!("unknown model id {}", id.0)))
    }

    fn query(
        &self,
        conn: &dyn Conn,
        (sql, values): (String, Values),
    ) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        conn.query(&sql, values)
    }

    fn exec(&self, conn: &dyn Conn, (sql, values): (String, Values)) -> Result<u64, StoreError> {
        conn.exec(&sql, values)
    }

    fn cols(model: &Model, fields: Option<&[String]>, must: &[String]) -> Cols {
        match fields {
            None => Cols {
                props: (0..model.properties.len()).collect(),
                extra: !model.is_strict(),
            },
            Some(f) => Cols {
                props: model
                    .properties
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| f.contains(&p.name) || must.contains(&p.name))
                    .map(|(i, _)| i)
                    .collect(),
                extra: !model.is_strict() && f.iter().any(|n| model.property(n).is_none()),
            },
        }
    }

    fn select_cols(sel: &mut SelectStatement, model: &Model, qual: &str, cols: &Cols) {
        for &i in &cols.props {
            if let Some(p) = model.properties.get(i) {
                sel.expr(col(qual, &p.name));
            }
        }
        if cols.extra {
            sel.expr(col(qual, EXTRA));
        }
    }

    /// Decodes the leading columns of `row` (as selected by `cols`) into a record.
    fn decode_row(
        model: &Model,
        cols: &Cols,
        row: &mut Vec<SqlValue>,
        fields: Option<&[String]>,
    ) -> Record {
        let mut rec = Record::new();
        let mut values = std::mem::take(row).into_iter();
        for &i in &cols.props {
            let (Some(p), Some(v)) = (model.properties.get(i), values.next()) else {
                continue;
            };
            if let Some(j) = decode(&p.ty, v) {
                rec.insert(p.name.clone(), j);
            }
        }
        if cols.extra {
            if let Some(SqlValue::Text(t)) = values.next() {
                if let Ok(Value::Object(extra)) = serde_json::from_str::<Value>(&t) {
                    for (k, v) in extra {
                        let wanted = fields.is_none_or(|f| f.contains(&k));
                        if wanted && !v.is_null() && !rec.contains_key(&k) {
                            rec.insert(k, v);
                        }
                    }
                }
            }
        }
        // What is left (e.g. an include's parent key) goes back to the caller.
        row.extend(values);
        rec
    }

    /// Parent-side keys that the given includes need in each parent record.
    fn include_keys(model: &Model, includes: &[Include]) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        for inc in includes {
            let rel = model.relation(&inc.relation).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "model `{}` has no relation `{}`",
                    model.name, inc.relation
                ))
            })?;
            if rel.disable_include {
                continue;
            }
            keys.push(match rel.kind {
                RelationKind::BelongsTo => rel.foreign_key.clone(),
                _ => rel.primary_key.clone(),
            });
        }
        Ok(keys)
    }

    /// The SELECT a `find` runs, with the columns it reads.
    fn find_select(
        &self,
        model: &Model,
        filter: &Filter,
    ) -> Result<(SelectStatement, Cols), StoreError> {
        let qual = model.table.as_str();
        let keys = Self::include_keys(model, &filter.include)?;
        let fields = filter.fields.as_deref();
        let cols = Self::cols(model, fields, &keys);
        let mut sel = Query::select();
        sel.from(Alias::new(qual));
        Self::select_cols(&mut sel, model, qual, &cols);
        if let Some(w) = &filter.where_ {
            sel.cond_where(self.compiler().where_(model, qual, w)?);
        }
        self.compiler()
            .order(&mut sel, model, qual, &filter.order)?;
        Ok((sel, cols))
    }

    /// The SQL text of a `find`. LIMIT and OFFSET are written as literals (they are
    /// integers from the parsed filter, never client text): bound as parameters, they made
    /// SQLite (built with STAT4) re-prepare the statement on every run.
    fn find_sql(&self, sel: &SelectStatement, filter: &Filter) -> (String, Values) {
        let (mut sql, values) = self.d.select(sel);
        match filter.limit {
            Some(l) => sql.push_str(&format!(" LIMIT {l}")),
            // SQLite needs a LIMIT before OFFSET; -1 would be "none" but u64 cannot say it.
            None if filter.skip > 0 => sql.push_str(&format!(" LIMIT {}", i64::MAX)),
            None => {}
        }
        if filter.skip > 0 {
            sql.push_str(&format!(" OFFSET {}", filter.skip));
        }
        (sql, values)
    }

    pub(crate) fn find(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        filter: &Filter,
    ) -> Result<Vec<Record>, StoreError> {
        let model = self.model(model_id)?;
        let (sel, cols) = self.find_select(model, filter)?;
        let rows = self.query(conn, self.find_sql(&sel, filter))?;
        let mut out = Vec::with_capacity(rows.len());
        for mut row in rows {
            out.push(Self::decode_row(
                model,
                &cols,
                &mut row,
                filter.fields.as_deref(),
            ));
        }
        self.include(conn, model, &mut out, &filter.include)?;
        Ok(out)
    }

    /// The database's plan for the top-level statement of a `find` (no includes), one
    /// line per plan row: what tests and operators read to check that indexes are used.
    pub(crate) fn explain(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        filter: &Filter,
    ) -> Result<Vec<String>, StoreError> {
        let model = self.model(model_id)?;
        let (sel, _) = self.find_select(model, filter)?;
        let (sql, values) = self.find_sql(&sel, filter);
        let rows = conn.query(&format!("{} {sql}", self.d.explain_prefix()), values)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect())
    }

    fn id_where(model: &Model, id: &Scalar) -> Where {
        Where::Cond {
            property: PropRef::Declared {
                name: model.id_name().to_string(),
                ty: model.id_prop().ty.clone(),
            },
            op: Op::Eq(id.clone()),
        }
    }

    pub(crate) fn find_by_id(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        id: &Scalar,
        filter: Option<&Filter>,
    ) -> Result<Option<Record>, StoreError> {
        let model = self.model(model_id)?;
        let mut f = filter.cloned().unwrap_or_default();
        let by_id = Self::id_where(model, id);
        f.where_ = Some(match f.where_.take() {
            Some(w) => by_id.and(w),
            None => by_id,
        });
        f.limit = Some(1);
        f.skip = 0;
        Ok(self.find(conn, model_id, &f)?.into_iter().next())
    }

    pub(crate) fn count(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        where_: Option<&Where>,
    ) -> Result<u64, StoreError> {
        let model = self.model(model_id)?;
        let mut sel = Query::select();
        sel.expr(Expr::cust("COUNT(*)"))
            .from(Alias::new(&model.table));
        if let Some(w) = where_ {
            sel.cond_where(self.compiler().where_(model, &model.table, w)?);
        }
        let rows = self.query(conn, self.d.select(&sel))?;
        match rows.first().and_then(|r| r.first()) {
            Some(SqlValue::Integer(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            _ => Ok(0),
        }
    }

    /// Ids of rows matching `where_`, at most `limit`.
    fn ids(
        &self,
        conn: &dyn Conn,
        model: &Model,
        where_: Option<&Where>,
        limit: u64,
    ) -> Result<Vec<Value>, StoreError> {
        let qual = model.table.as_str();
        let mut sel = Query::select();
        sel.expr(col(qual, model.id_name()))
            .from(Alias::new(qual))
            .limit(limit);
        if let Some(w) = where_ {
            sel.cond_where(self.compiler().where_(model, qual, w)?);
        }
        self.compiler().order(&mut sel, model, qual, &[])?;
        let rows = self.query(conn, self.d.select(&sel))?;
        Ok(rows
            .into_iter()
            .filter_map(|mut r| r.pop().and_then(|v| decode(&model.id_prop().ty, v)))
            .collect())
    }

    // ---------------------------------------------------------------- includes

    fn include(
        &self,
        conn: &dyn Conn,
        model: &Model,
        parents: &mut [Record],
        includes: &[Include],
    ) -> Result<(), StoreError> {
        for inc in includes {
            let rel = model.relation(&inc.relation).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "model `{}` has no relation `{}`",
                    model.name, inc.relation
                ))
            })?;
            if rel.disable_include {
                continue;
            }
            let target = self.model(rel.target)?;
            let parent_key = match rel.kind {
                RelationKind::BelongsTo => rel.foreign_key.as_str(),
                _ => rel.primary_key.as_str(),
            };
            let mut seen = std::collections::HashSet::new();
            let keys: Vec<Value> = parents
                .iter()
                .filter_map(|p| p.get(parent_key))
                .filter(|v| key_of(v).is_some_and(|k| seen.insert(k)))
                .cloned()
                .collect();
            let through;
            let link = match rel.kind {
                RelationKind::BelongsTo => Link::Direct(&rel.primary_key),
                RelationKind::HasMany | RelationKind::HasOne => Link::Direct(&rel.foreign_key),
                RelationKind::HasManyThrough | RelationKind::HasAndBelongsToMany => {
                    let (Some(t), Some(kt)) = (rel.through, rel.key_through.as_deref()) else {
                        return Err(StoreError::Internal(format!(
                            "relation `{}` has no through model",
                            rel.name
                        )));
                    };
                    through = self.model(t)?;
                    Link::Through {
                        through,
                        fk: &rel.foreign_key,
                        kt,
                    }
                }
            };
            let to_many = rel.kind.is_to_many();
            let related = if keys.is_empty() {
                Vec::new()
            } else {
                self.fetch_related(conn, target, &link, &keys, &inc.scope)?
            };
            // Group per parent key, keeping the scope's order, then page each group.
            let mut groups: HashMap<String, Vec<Record>> = HashMap::new();
            for (k, r) in related {
                groups.entry(k).or_default().push(r);
            }
            let skip = usize::try_from(inc.scope.skip).unwrap_or(usize::MAX);
            let limit = match (to_many, inc.scope.limit) {
                (false, _) => 1,
                (true, Some(l)) => usize::try_from(l).unwrap_or(usize::MAX),
                (true, None) => usize::MAX,
            };
            let mut order: Vec<(String, usize)> = Vec::with_capacity(groups.len());
            let mut flat: Vec<Record> = Vec::new();
            for (k, rows) in groups {
                let kept: Vec<Record> = rows.into_iter().skip(skip).take(limit).collect();
                order.push((k, kept.len()));
                flat.extend(kept);
            }
            if !inc.scope.include.is_empty() {
                self.include(conn, target, &mut flat, &inc.scope.include)?;
            }
            let mut flat = flat.into_iter();
            let mut groups: HashMap<String, Vec<Record>> = HashMap::with_capacity(order.len());
            for (k, n) in order {
                groups.insert(k, flat.by_ref().take(n).collect());
            }
            for p in parents.iter_mut() {
                let group = p
                    .get(parent_key)
                    .and_then(key_of)
                    .and_then(|k| groups.get(&k));
                if to_many {
                    let items = group
                        .map(|g| g.iter().cloned().map(Value::Object).collect())
                        .unwrap_or_default();
                    p.insert(rel.name.clone(), Value::Array(items));
                } else if let Some(first) = group.and_then(|g| g.first()) {
                    p.insert(rel.name.clone(), Value::Object(first.clone()));
                }
            }
        }
        Ok(())
    }

    /// Related rows for all `keys` in one query per chunk, each with its parent key, in the
    /// scope's order.
    fn fetch_related(
        &self,
        conn: &dyn Conn,
        target: &Model,
        link: &Link<'_>,
        keys: &[Value],
        scope: &Filter,
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let qual = target.table.as_str();
        let mut must = Self::include_keys(target, &scope.include)?;
        let (key_expr, key_ty) = match link {
            Link::Direct(column) => {
                must.push((*column).to_string());
                let ty = target
                    .property(column)
                    .map(|p| p.ty.clone())
                    .ok_or_else(|| {
                        StoreError::Internal(format!("`{}` has no key `{column}`", target.name))
                    })?;
                (col(qual, column), ty)
            }
            Link::Through { through, fk, .. } => {
                let ty = through.property(fk).map(|p| p.ty.clone()).ok_or_else(|| {
                    StoreError::Internal(format!("`{}` has no key `{fk}`", through.name))
                })?;
                (col(THROUGH, fk), ty)
            }
        };
        let fields = scope.fields.as_deref();
        let cols = Self::cols(target, fields, &must);
        let mut out = Vec::new();
        for chunk in keys.chunks(CHUNK) {
            let mut bound = Vec::with_capacity(chunk.len());
            for k in chunk {
                // A key that cannot be a value of the column matches nothing: skip it.
                if let Ok(v) = encode("key", &key_ty, k) {
                    bound.push(Expr::val(v));
                }
            }
            if bound.is_empty() {
                continue;
            }
            let mut sel = Query::select();
            sel.from(Alias::new(qual));
            Self::select_cols(&mut sel, target, qual, &cols);
            sel.expr(key_expr.clone());
            if let Link::Through { through, kt, .. } = link {
                sel.join_as(
                    JoinType::InnerJoin,
                    Alias::new(&through.table),
                    Alias::new(THROUGH),
                    Cond::all().add(
                        col(THROUGH, kt).equals((Alias::new(qual), Alias::new(target.id_name()))),
                    ),
                );
            }
            let mut cond = Cond::all().add(key_expr.clone().is_in(bound));
            if let Some(w) = &scope.where_ {
                cond = cond.add(self.compiler().where_(target, qual, w)?);
            }
            sel.cond_where(cond);
            self.compiler()
                .order(&mut sel, target, qual, &scope.order)?;
            for mut row in self.query(conn, self.d.select(&sel))? {
                let rec = Self::decode_row(target, &cols, &mut row, fields);
                let key = row
                    .pop()
                    .and_then(|v| decode(&key_ty, v))
                    .and_then(|v| key_of(&v));
                if let Some(k) = key {
                    out.push((k, rec));
                }
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- writes

    fn default_for(p: &portcullis_schema::Property) -> Option<Value> {
        match p.default_fn {
            Some(DefaultFn::Uuid) => Some(Value::String(uuid::Uuid::new_v4().to_string())),
            Some(DefaultFn::Now) => Some(Value::String(now_iso())),
            None => p.default.clone(),
        }
    }

    /// Undeclared, non-null keys of `data` as a JSON object (loose models only).
    fn extras(model: &Model, data: &Record) -> Option<String> {
        if model.is_strict() {
            return None;
        }
        let extra: Record = data
            .iter()
            .filter(|(k, v)| model.property(k).is_none() && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!extra.is_empty()).then(|| Value::Object(extra).to_string())
    }

    /// Inserts one row and returns its id. `defaults`: fill absent properties with their
    /// `default`/`defaultFn` (off when loading stored data verbatim).
    pub(crate) fn insert(
        &self,
        conn: &dyn Conn,
        model: &Model,
        data: &Record,
        defaults: bool,
    ) -> Result<Value, StoreError> {
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        let mut id = None;
        for p in &model.properties {
            let mut v = data.get(&p.name).filter(|v| !v.is_null()).cloned();
            if v.is_none() && defaults {
                v = Self::default_for(p);
            }
            let Some(v) = v else { continue };
            if p.id {
                id = Some(v.clone());
            }
            cols.push(Alias::new(&p.name));
            vals.push(Expr::val(encode(&p.name, &p.ty, &v)?));
        }
        if let Some(extra) = Self::extras(model, data) {
            cols.push(Alias::new(EXTRA));
            vals.push(Expr::val(extra));
        }
        let mut ins = Query::insert();
        ins.into_table(Alias::new(&model.table));
        if cols.is_empty() {
            ins.or_default_values();
        } else {
            ins.columns(cols);
            ins.values(vals)
                .map_err(|e| StoreError::Internal(e.to_string()))?;
        }
        let id_prop = model.id_prop();
        match id {
            Some(id) => {
                self.exec(conn, self.d.insert(&ins))?;
                if let (true, Some(n)) = (id_prop.generated, id.as_i64()) {
                    if let Some(stmt) = self.d.sync_sequence(&model.table, &id_prop.name, n) {
                        self.query(conn, stmt)?;
                    }
                }
                Ok(id)
            }
            None if id_prop.generated => {
                ins.returning_col(Alias::new(&id_prop.name));
                let mut rows = self.query(conn, self.d.insert(&ins))?;
                rows.pop()
                    .and_then(|mut r| r.pop())
                    .and_then(|v| decode(&id_prop.ty, v))
                    .ok_or_else(|| {
                        StoreError::Internal(format!("no id generated for `{}`", model.name))
                    })
            }
            None => Err(StoreError::Invalid(format!(
                "`{}` needs a value for its id",
                model.name
            ))),
        }
    }

    fn reread(&self, conn: &dyn Conn, model: &Model, id: &Value) -> Result<Record, StoreError> {
        self.find_by_id(conn, model.id, &json_scalar(id), None)?
            .ok_or_else(|| {
                StoreError::Internal(format!("stored `{}` row {id} not found again", model.name))
            })
    }

    pub(crate) fn create(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        rows: Vec<Record>,
    ) -> Result<Vec<Record>, StoreError> {
        let model = self.model(model_id)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = self.insert(conn, model, row, true)?;
            out.push(self.reread(conn, model, &id)?);
        }
        Ok(out)
    }

    /// Patch (`replace == false`) or replace the matching rows; returns the number of rows
    /// changed, and with `returning`, the changed rows (as they are after the change).
    fn write_row(
        &self,
        conn: &dyn Conn,
        model: &Model,
        where_: Option<&Where>,
        data: &Record,
        replace: bool,
        returning: Option<&mut Vec<Record>>,
    ) -> Result<u64, StoreError> {
        let qual = model.table.as_str();
        let mut upd = Query::update();
        upd.table(Alias::new(qual));
        let mut any = false;
        for p in &model.properties {
            if replace && p.id {
                continue;
            }
            let v = match data.get(&p.name) {
                Some(v) => encode(&p.name, &p.ty, v)?,
                None if replace => sea_query::Value::String(None),
                None => continue,
            };
            upd.value(Alias::new(&p.name), Expr::val(v));
            any = true;
        }
        if !model.is_strict() {
            if replace {
                upd.value(
                    Alias::new(EXTRA),
                    Expr::val(sea_query::Value::String(Self::extras(model, data))),
                );
                any = true;
            } else {
                let mut e = col(qual, EXTRA);
                let mut changed = false;
                for (k, v) in data.iter().filter(|(k, _)| model.property(k).is_none()) {
                    let json = (!v.is_null()).then(|| v.to_string());
                    e = self.d.json_set(e, k, json);
                    changed = true;
                }
                if changed {
                    upd.value(Alias::new(EXTRA), e);
                    any = true;
                }
            }
        }
        if !any {
            return self.count(conn, model.id, where_);
        }
        if let Some(w) = where_ {
            upd.cond_where(self.compiler().where_(model, qual, w)?);
        }
        match returning {
            None => self.exec(conn, self.d.update(&upd)),
            Some(out) => {
                upd.returning(Self::returning_all(model));
                let rows = self.query(conn, self.d.update(&upd))?;
                Ok(self.decode_returned(model, rows, out))
            }
        }
    }

    /// Every column of `model`, for a `RETURNING` clause read by `decode_returned`.
    fn returning_all(model: &Model) -> sea_query::ReturningClause {
        let mut cols: Vec<Alias> = model
            .properties
            .iter()
            .map(|p| Alias::new(&p.name))
            .collect();
        if !model.is_strict() {
            cols.push(Alias::new(EXTRA));
        }
        Query::returning().columns(cols)
    }

    /// Decodes the rows of a `RETURNING` clause built by `returning_all` into `out`.
    fn decode_returned(
        &self,
        model: &Model,
        rows: Vec<Vec<SqlValue>>,
        out: &mut Vec<Record>,
    ) -> u64 {
        let cols = Self::cols(model, None, &[]);
        let n = rows.len() as u64;
        for mut row in rows {
            out.push(Self::decode_row(model, &cols, &mut row, None));
        }
        n
    }

    pub(crate) fn update_by_id(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        id: &Scalar,
        patch: &Record,
        replace: bool,
    ) -> Result<Option<Record>, StoreError> {
        let model = self.model(model_id)?;
        let w = Self::id_where(model, id);
        if self.write_row(conn, model, Some(&w), patch, replace, None)? == 0 {
            return Ok(None);
        }
        // A patch may move the row to a new id.
        let new_id = match patch.get(model.id_name()) {
            Some(v) if !replace && !v.is_null() => json_scalar(v),
            _ => id.clone(),
        };
        self.find_by_id(conn, model_id, &new_id, None)
    }

    pub(crate) fn upsert(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        data: Record,
        replace: bool,
    ) -> Result<(Record, RowChange), StoreError> {
        let model = self.model(model_id)?;
        if let Some(id) = data.get(model.id_name()).filter(|v| !v.is_null()) {
            if let Some(r) = self.update_by_id(conn, model_id, &json_scalar(id), &data, replace)? {
                return Ok((r, RowChange::Updated));
            }
        }
        let id = self.insert(conn, model, &data, true)?;
        Ok((self.reread(conn, model, &id)?, RowChange::Created))
    }

    pub(crate) fn upsert_with_where(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        where_: Option<&Where>,
        data: Record,
    ) -> Result<(Record, RowChange), StoreError> {
        let model = self.model(model_id)?;
        let ids = self.ids(conn, model, where_, 2)?;
        match ids.as_slice() {
            [] => {
                let id = self.insert(conn, model, &data, true)?;
                Ok((self.reread(conn, model, &id)?, RowChange::Created))
            }
            [id] => {
                let id = json_scalar(id);
                let row = self
                    .update_by_id(conn, model_id, &id, &data, false)?
                    .ok_or_else(|| {
                        StoreError::Internal("matched row vanished during upsert".into())
                    })?;
                Ok((row, RowChange::Updated))
            }
            _ => Err(StoreError::MultipleMatches),
        }
    }

    pub(crate) fn update_all(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        where_: Option<&Where>,
        patch: &Record,
        returning: Option<&mut Vec<Record>>,
    ) -> Result<u64, StoreError> {
        let model = self.model(model_id)?;
        self.write_row(conn, model, where_, patch, false, returning)
    }

    /// Deletes the matching rows; with `returning`, also collects them as they were.
    pub(crate) fn delete(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        where_: Option<&Where>,
        returning: Option<&mut Vec<Record>>,
    ) -> Result<u64, StoreError> {
        let model = self.model(model_id)?;
        let mut del = Query::delete();
        del.from_table(Alias::new(&model.table));
        if let Some(w) = where_ {
            del.cond_where(self.compiler().where_(model, &model.table, w)?);
        }
        match returning {
            None => self.exec(conn, self.d.delete(&del)),
            Some(out) => {
                del.returning(Self::returning_all(model));
                let rows = self.query(conn, self.d.delete(&del))?;
                Ok(self.decode_returned(model, rows, out))
            }
        }
    }

    pub(crate) fn delete_by_id(
        &self,
        conn: &dyn Conn,
        model_id: ModelId,
        id: &Scalar,
        returning: Option<&mut Vec<Record>>,
    ) -> Result<u64, StoreError> {
        let model = self.model(model_id)?;
        self.delete(conn, model_id, Some(&Self::id_where(model, id)), returning)
    }
}
