//! Filter parsing: the wall's queries, from the raw query string to the typed, schema-checked
//! AST, in both encodings LoopBack clients use (bracket `qs` form and JSON).
//!
//! `cargo bench -p portcullis-query --bench filter` (add `-- --quick` for a short run).
//!
//! Each case runs what the server runs per request: `parse_query_string` on the raw query,
//! `object_arg` on its `filter` value (which parses the JSON form), then `parse_filter`
//! against the wall's `Post` model loaded from `examples/wall`. One more case times
//! `parse_filter` alone on a ready `serde_json::Value`.
//!
//! SQL compilation is not measured: `portcullis-store` keeps its filter-to-SQL compiler
//! crate-private (`compile::Compiler` is `pub(crate)`); its only public entry points
//! (`Store::find`, `Store::explain`) execute against a database.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_query::{object_arg, parse_filter, parse_query_string, Filter};
use portcullis_schema::{load_app, App, ModelId};

/// The benchmark suite's list request (scenario a).
const LIST_QS: &str = "filter[order]=created%20DESC&filter[limit]=20";
/// Scenario b: the same with the creator included.
const INCLUDE_QS: &str = "filter[order]=created%20DESC&filter[limit]=20&filter[include]=creator";
/// The wall client's poll (examples/wall/client/app.js).
const POLL_QS: &str = "filter[include][creator]&filter[where][created][gte]=2020-01-07T22%3A39%3A00.000Z&filter[order]=created%20desc";
/// The same poll as a JSON-encoded filter (percent-encoded, as a browser sends it).
const POLL_JSON: &str = "filter=%7B%22include%22%3A%7B%22creator%22%3Atrue%7D%2C%22where%22%3A%7B%22created%22%3A%7B%22gte%22%3A%222020-01-07T22%3A39%3A00.000Z%22%7D%7D%2C%22order%22%3A%22created%20desc%22%7D";
/// The list request as JSON.
const LIST_JSON: &str = "filter=%7B%22order%22%3A%22created%20DESC%22%2C%22limit%22%3A20%7D";

fn wall() -> (App, ModelId) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wall");
    let app = load_app(&dir).expect("examples/wall loads");
    let post = app.model_id("Post").expect("Post model");
    (app, post)
}

/// What the server does with a request's query string.
fn pipeline(app: &App, model: ModelId, raw: &str) -> Option<Filter> {
    let query = parse_query_string(raw);
    let value = object_arg(query.get("filter")).expect("filter argument")?;
    Some(parse_filter(app, model, &value).expect("valid filter"))
}

fn bench(c: &mut Criterion) {
    let (app, post) = wall();
    // Both encodings of the poll mean the same filter.
    assert_eq!(
        pipeline(&app, post, POLL_QS),
        pipeline(&app, post, POLL_JSON),
        "qs and JSON forms of the poll differ"
    );
    assert_eq!(
        pipeline(&app, post, LIST_QS),
        pipeline(&app, post, LIST_JSON)
    );
    let mut group = c.benchmark_group("filter");
    for (name, raw) in [
        ("qs/list", LIST_QS),
        ("json/list", LIST_JSON),
        ("qs/list_include", INCLUDE_QS),
        ("qs/poll", POLL_QS),
        ("json/poll", POLL_JSON),
    ] {
        group.bench_function(name, |b| b.iter(|| pipeline(&app, post, black_box(raw))));
    }
    let value = serde_json::json!({
        "include": {"creator": true},
        "where": {"created": {"gte": "2020-01-07T22:39:00.000Z"}},
        "order": "created desc"
    });
    group.bench_function("parse_filter_only/poll", |b| {
        b.iter(|| parse_filter(&app, post, black_box(&value)))
    });
    group.bench_function("parse_query_string_only/poll", |b| {
        b.iter(|| parse_query_string(black_box(POLL_QS)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
