//! The route table: every remote method a model exposes, with LoopBack 3's canonical
//! name, aliases, access type and HTTP route, and the matcher that picks the route for a
//! request the way strong-remoting orders its routes.

use portcullis_authz::AccessType;
use portcullis_schema::{Model, RelationKind};

/// HTTP verbs LoopBack routes use. `All` matches any verb (User.logout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    All,
}

impl Verb {
    pub fn from_http(method: &axum::http::Method) -> Option<Verb> {
        use axum::http::Method as M;
        Some(match *method {
            M::GET => Verb::Get,
            M::HEAD => Verb::Head,
            M::POST => Verb::Post,
            M::PUT => Verb::Put,
            M::PATCH => Verb::Patch,
            M::DELETE => Verb::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
            Verb::All => "ALL",
        }
    }
}

/// What a relation route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    Get,
    FindById,
    Count,
    Create,
    /// Delete every related row (to-many).
    Delete,
    UpdateById,
    DestroyById,
    Link,
    Unlink,
    ExistsLink,
    /// hasOne: update the related row.
    Update,
    /// hasOne: delete the related row.
    Destroy,
}

impl RelOp {
    fn prefix(self) -> &'static str {
        match self {
            RelOp::Get => "__get__",
            RelOp::FindById => "__findById__",
            RelOp::Count => "__count__",
            RelOp::Create => "__create__",
            RelOp::Delete => "__delete__",
            RelOp::UpdateById => "__updateById__",
            RelOp::DestroyById => "__destroyById__",
            RelOp::Link => "__link__",
            RelOp::Unlink => "__unlink__",
            RelOp::ExistsLink => "__exists__",
            RelOp::Update => "__update__",
            RelOp::Destroy => "__destroy__",
        }
    }

    fn access_type(self) -> AccessType {
        match self {
            RelOp::Get | RelOp::FindById | RelOp::Count | RelOp::ExistsLink => AccessType::Read,
            _ => AccessType::Write,
        }
    }
}

/// The built-in behaviour behind a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    PatchOrCreate,
    ReplaceOrCreate,
    UpsertWithWhere,
    Exists,
    FindById,
    ReplaceById,
    Find,
    FindOne,
    UpdateAll,
    DeleteById,
    Count,
    PatchAttributes,
    /// `createChangeStream`: a server-sent event stream of the model's changes.
    ChangeStream,
    Relation {
        relation: usize,
        op: RelOp,
    },
    /// The built-in methods of User-derived models.
    User(UserOp),
    /// A custom remote method: index into the model's declared methods.
    Remote(usize),
}

/// The methods LoopBack's `User` adds to PersistedModel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOp {
    Login,
    Logout,
    Verify,
    Confirm,
    ResetPassword,
    ChangePassword,
    SetPassword,
}

/// One remote method of a model.
#[derive(Debug, Clone)]
pub struct RemoteMethod {
    /// Canonical name, the one ACLs match (`patchAttributes`, `__get__creator`).
    pub name: String,
    /// Other names (`updateAttributes`), matched only by ACL-table rules.
    pub aliases: Vec<String>,
    pub access_type: AccessType,
    pub action: Action,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub verb: Verb,
    /// Path below the model's base path, split into segments; `:name` is a parameter.
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `:name`. `id` is the instance id, `fk` a related row's id; custom methods may name
    /// others, which become arguments with `http.source: "path"` (or no source).
    Param(String),
}

fn route(verb: Verb, path: &str) -> Route {
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix(':') {
            Some(name) => Segment::Param(name.to_string()),
            None => Segment::Literal(s.to_string()),
        })
        .collect();
    Route { verb, segments }
}

fn method(
    name: &str,
    aliases: &[&'static str],
    access: AccessType,
    action: Action,
    routes: Vec<Route>,
) -> RemoteMethod {
    RemoteMethod {
        name: name.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        access_type: access,
        action,
        routes,
    }
}

/// The PersistedModel and relation methods of `model`, in LoopBack's declaration order.
pub fn model_methods(model: &Model) -> Vec<RemoteMethod> {
    use AccessType::{Read, Write};
    let replace_on_put = model.options.replace_on_put;
    let mut out = vec![
        method(
            "create",
            &[],
            Write,
            Action::Create,
            vec![route(Verb::Post, "/")],
        ),
        method(
            "patchOrCreate",
            &["upsert", "updateOrCreate"],
            Write,
            Action::PatchOrCreate,
            if replace_on_put {
                vec![route(Verb::Patch, "/")]
            } else {
                vec![route(Verb::Patch, "/"), route(Verb::Put, "/")]
            },
        ),
        method(
            "replaceOrCreate",
            &[],
            Write,
            Action::ReplaceOrCreate,
            if replace_on_put {
                vec![route(Verb::Put, "/"), route(Verb::Post, "/replaceOrCreate")]
            } else {
                vec![route(Verb::Post, "/replaceOrCreate")]
            },
        ),
        method(
            "upsertWithWhere",
            &["patchOrCreateWithWhere"],
            Write,
            Action::UpsertWithWhere,
            vec![route(Verb::Post, "/upsertWithWhere")],
        ),
        method(
            "exists",
            &[],
            Read,
            Action::Exists,
            vec![route(Verb::Get, "/:id/exists"), route(Verb::Head, "/:id")],
        ),
        method(
            "findById",
            &[],
            Read,
            Action::FindById,
            vec![route(Verb::Get, "/:id")],
        ),
        method(
            "replaceById",
            &[],
            Write,
            Action::ReplaceById,
            if replace_on_put {
                vec![route(Verb::Put, "/:id"), route(Verb::Post, "/:id/replace")]
            } else {
                vec![route(Verb::Post, "/:id/replace")]
            },
        ),
        method("find", &[], Read, Action::Find, vec![route(Verb::Get, "/")]),
        method(
            "findOne",
            &[],
            Read,
            Action::FindOne,
            vec![route(Verb::Get, "/findOne")],
        ),
        method(
            "updateAll",
            &["update"],
            Write,
            Action::UpdateAll,
            vec![route(Verb::Post, "/update")],
        ),
        method(
            "deleteById",
            &["destroyById", "removeById"],
            Write,
            Action::DeleteById,
            vec![route(Verb::Delete, "/:id")],
        ),
        method(
            "count",
            &[],
            Read,
            Action::Count,
            vec![route(Verb::Get, "/count")],
        ),
        method(
            "patchAttributes",
            &["updateAttributes"],
            Write,
            Action::PatchAttributes,
            if replace_on_put {
                vec![route(Verb::Patch, "/:id")]
            } else {
                vec![route(Verb::Patch, "/:id"), route(Verb::Put, "/:id")]
            },
        ),
        method(
            "createChangeStream",
            &[],
            Read,
            Action::ChangeStream,
            vec![
                route(Verb::Post, "/change-stream"),
                route(Verb::Get, "/change-stream"),
            ],
        ),
    ];
    if model.is_user_model() {
        use AccessType::Execute;
        out.extend([
            method(
                "login",
                &[],
                Execute,
                Action::User(UserOp::Login),
                vec![route(Verb::Post, "/login")],
            ),
            method(
                "logout",
                &[],
                Execute,
                Action::User(UserOp::Logout),
                vec![route(Verb::All, "/logout")],
            ),
            method(
                "verify",
                &[],
                Execute,
                Action::User(UserOp::Verify),
                vec![route(Verb::Post, "/:id/verify")],
            ),
            method(
                "confirm",
                &[],
                Read,
                Action::User(UserOp::Confirm),
                vec![route(Verb::Get, "/confirm")],
            ),
            method(
                "resetPassword",
                &[],
                Execute,
                Action::User(UserOp::ResetPassword),
                vec![route(Verb::Post, "/reset")],
            ),
            method(
                "changePassword",
                &[],
                Execute,
                Action::User(UserOp::ChangePassword),
                vec![route(Verb::Post, "/change-password")],
            ),
            method(
                "setPassword",
                &[],
                Execute,
                Action::User(UserOp::SetPassword),
                vec![route(Verb::Post, "/reset-password")],
            ),
        ]);
    }
    for (index, relation) in model.relations.iter().enumerate() {
        let path = &relation.http_path;
        let mut add = |op: RelOp, verb: Verb, suffix: &str| {
            out.push(method(
                &format!("{}{}", op.prefix(), relation.name),
                &[],
                op.access_type(),
                Action::Relation {
                    relation: index,
                    op,
                },
                vec![route(verb, &format!("/:id/{path}{suffix}"))],
            ));
        };
        match relation.kind {
            RelationKind::BelongsTo => add(RelOp::Get, Verb::Get, ""),
            RelationKind::HasOne => {
                add(RelOp::Get, Verb::Get, "");
                add(RelOp::Create, Verb::Post, "");
                add(RelOp::Update, Verb::Put, "");
                add(RelOp::Destroy, Verb::Delete, "");
            }
            RelationKind::HasMany
            | RelationKind::HasManyThrough
            | RelationKind::HasAndBelongsToMany => {
                add(RelOp::FindById, Verb::Get, "/:fk");
                add(RelOp::DestroyById, Verb::Delete, "/:fk");
                add(RelOp::UpdateById, Verb::Put, "/:fk");
                if relation.kind.has_through() {
                    add(RelOp::Link, Verb::Put, "/rel/:fk");
                    add(RelOp::Unlink, Verb::Delete, "/rel/:fk");
                    add(RelOp::ExistsLink, Verb::Head, "/rel/:fk");
                }
                add(RelOp::Get, Verb::Get, "");
                add(RelOp::Create, Verb::Post, "");
                add(RelOp::Delete, Verb::Delete, "");
                add(RelOp::Count, Verb::Get, "/count");
            }
        }
    }
    out
}

/// A route matched against a request path.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    pub method: &'a RemoteMethod,
    pub id: Option<String>,
    pub fk: Option<String>,
    /// The other named parameters of a custom method's path, in path order.
    pub params: Vec<(&'a str, String)>,
}

/// Picks the route for `verb` and `segments` (already percent-decoded, below the model's
/// base path). Exact-verb routes beat `ALL` routes; among routes of one verb, a literal
/// segment beats a parameter at the first place they differ, as in strong-remoting.
pub fn match_route<'a>(
    methods: &'a [RemoteMethod],
    verb: Verb,
    segments: &[String],
) -> Option<Matched<'a>> {
    let mut best: Option<(&'a RemoteMethod, &'a Route)> = None;
    for m in methods {
        for r in &m.routes {
            if r.verb != verb && r.verb != Verb::All {
                continue;
            }
            if r.segments.len() != segments.len() {
                continue;
            }
            let fits = r
                .segments
                .iter()
                .zip(segments)
                .all(|(seg, actual)| match seg {
                    // Express matches routes case-insensitively.
                    Segment::Literal(l) => l.eq_ignore_ascii_case(actual),
                    Segment::Param(_) => !actual.is_empty(),
                });
            if !fits {
                continue;
            }
            best = match best {
                Some((bm, br)) if !outranks(r, br) => Some((bm, br)),
                _ => Some((m, r)),
            };
        }
    }
    let (method, route) = best?;
    let mut matched = Matched {
        method,
        id: None,
        fk: None,
        params: Vec::new(),
    };
    for (seg, actual) in route.segments.iter().zip(segments) {
        match seg {
            Segment::Param(name) if name == "id" => matched.id = Some(actual.clone()),
            Segment::Param(name) if name == "fk" => matched.fk = Some(actual.clone()),
            Segment::Param(name) => matched.params.push((name.as_str(), actual.clone())),
            Segment::Literal(_) => {}
        }
    }
    Some(matched)
}

fn outranks(a: &Route, b: &Route) -> bool {
    if (a.verb == Verb::All) != (b.verb == Verb::All) {
        return b.verb == Verb::All;
    }
    for (sa, sb) in a.segments.iter().zip(&b.segments) {
        match (sa, sb) {
            (Segment::Literal(_), Segment::Param(_)) => return true,
            (Segment::Param(_), Segment::Literal(_)) => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn methods() -> Vec<RemoteMethod> {
        vec![
            method(
                "findById",
                &[],
                AccessType::Read,
                Action::FindById,
                vec![route(Verb::Get, "/:id")],
            ),
            method(
                "findOne",
                &[],
                AccessType::Read,
                Action::FindOne,
                vec![route(Verb::Get, "/findOne")],
            ),
            method(
                "count",
                &[],
                AccessType::Read,
                Action::Count,
                vec![route(Verb::Get, "/count")],
            ),
            method(
                "logout",
                &[],
                AccessType::Execute,
                Action::Count,
                vec![route(Verb::All, "/logout")],
            ),
            method(
                "exists",
                &[],
                AccessType::Read,
                Action::Exists,
                vec![route(Verb::Get, "/:id/exists"), route(Verb::Head, "/:id")],
            ),
        ]
    }

    #[test]
    fn literal_segments_beat_parameters_and_all_loses_to_exact_verbs() {
        let ms = methods();
        let cases = [
            (Verb::Get, "/findOne", "findOne", None),
            (Verb::Get, "/FINDONE", "findOne", None),
            (Verb::Get, "/count", "count", None),
            (Verb::Get, "/7", "findById", Some("7")),
            (Verb::Get, "/logout", "findById", Some("logout")),
            (Verb::Post, "/logout", "logout", None),
            (Verb::Head, "/3", "exists", Some("3")),
            (Verb::Get, "/3/exists", "exists", Some("3")),
        ];
        for (verb, path, name, id) in cases {
            let m =
                match_route(&ms, verb, &seg(path)).unwrap_or_else(|| panic!("no route for {path}"));
            assert_eq!(m.method.name, name, "{verb:?} {path}");
            assert_eq!(m.id.as_deref(), id, "{verb:?} {path}");
        }
        assert!(match_route(&ms, Verb::Delete, &seg("/3/exists")).is_none());
    }
}
