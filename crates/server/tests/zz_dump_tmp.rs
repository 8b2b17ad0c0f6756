#[test]
fn dump() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wall");
    let app = portcullis_schema::load_app(&root).unwrap();
    let doc = portcullis_server::openapi::openapi_document(&app);
    std::fs::write(
        "/tmp/wall-openapi.json",
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
}
