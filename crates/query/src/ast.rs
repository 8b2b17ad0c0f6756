//! The typed filter AST. Every property name in it has been checked against the model and
//! every value coerced to the property's type, so back ends never see raw client input.

use portcullis_schema::{ModelId, PropType};

/// A complete filter: `where`, `order`, `limit`, `skip`, `fields` and `include`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub where_: Option<Where>,
    /// Empty means the back end's default order (by id ascending).
    pub order: Vec<OrderBy>,
    pub limit: Option<u64>,
    pub skip: u64,
    /// `None`: every property. `Some`: only these properties, in model order.
    pub fields: Option<Vec<String>>,
    pub include: Vec<Include>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub property: PropRef,
    pub descending: bool,
}

/// One relation to load with the results, with its own scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub relation: String,
    /// The target model of the relation.
    pub target: ModelId,
    /// `where`, `fields`, `order`, `limit`, `skip` and nested `include` for the related
    /// rows. A limit or skip here applies per parent row, as in LoopBack.
    pub scope: Filter,
}

/// A checked property reference.
#[derive(Debug, Clone, PartialEq)]
pub enum PropRef {
    /// A declared property, with its type.
    Declared { name: String, ty: PropType },
    /// An undeclared property of a non-strict model: stored with the row's extra data.
    Dynamic { name: String },
}

impl PropRef {
    pub fn name(&self) -> &str {
        match self {
            PropRef::Declared { name, .. } | PropRef::Dynamic { name } => name,
        }
    }
}

/// A boolean condition over rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Where {
    And(Vec<Where>),
    Or(Vec<Where>),
    Cond {
        property: PropRef,
        op: Op,
    },
    /// `property IN (SELECT select FROM model WHERE filter)`. Never produced by the parser:
    /// the server builds it for row-level access rules (group membership).
    InSubquery {
        property: PropRef,
        model: ModelId,
        select: String,
        filter: Box<Where>,
    },
    /// Matches nothing (e.g. `inq: []`); back ends render it as a false constant.
    Never,
}

impl Where {
    /// `name op` on the declared property `name` of type `ty`.
    pub fn declared(name: &str, ty: PropType, op: Op) -> Where {
        Where::Cond {
            property: PropRef::Declared {
                name: name.to_string(),
                ty,
            },
            op,
        }
    }

    /// `self AND other`, flattening nested conjunctions.
    pub fn and(self, other: Where) -> Where {
        match (self, other) {
            (Where::And(mut a), Where::And(b)) => {
                a.extend(b);
                Where::And(a)
            }
            (Where::And(mut a), w) | (w, Where::And(mut a)) => {
                a.push(w);
                Where::And(a)
            }
            (a, b) => Where::And(vec![a, b]),
        }
    }
}

/// A where operator with coerced operands.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `null` matches NULL (missing) values.
    Eq(Scalar),
    /// Null-safe: `neq: null` matches non-null; `neq: 1` matches NULL.
    Neq(Scalar),
    Gt(Scalar),
    Gte(Scalar),
    Lt(Scalar),
    Lte(Scalar),
    /// Inclusive.
    Between(Scalar, Scalar),
    Inq(Vec<Scalar>),
    Nin(Vec<Scalar>),
    /// SQL LIKE pattern (`%`, `_`), unanchored semantics are LoopBack's SQL ones (anchored).
    Like {
        pattern: String,
        negated: bool,
        case_insensitive: bool,
    },
    /// A regular expression already validated by Rust's linear-time `regex` crate.
    Regexp {
        pattern: String,
        case_insensitive: bool,
    },
}

/// A coerced value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Milliseconds since the Unix epoch, UTC.
    Date(i64),
    /// An object or array value (object/array/any properties), compared as JSON text.
    Json(serde_json::Value),
}
