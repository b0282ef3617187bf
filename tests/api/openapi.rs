//! The OpenAPI document: committed, served, and in step with the routers.

use axum::http::Method;
use serde_json::Value;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::TestApp;

fn committed() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let text = std::fs::read_to_string(path).expect("openapi.json is committed at the root");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

#[test]
fn the_committed_document_matches_the_code() {
    let generated: Value = serde_json::from_str(&shared::api::openapi::json()).unwrap();
    assert!(
        generated == committed(),
        "openapi.json is stale: run `cargo xtask openapi` and commit it"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_local_server_serves_the_document(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app.get("/v1/openapi.json").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, committed());
    assert_eq!(response.body["openapi"], "3.1.0");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_documented_operation_is_routed_and_no_other_method_is(pool: PgPool) {
    let app = TestApp::new(pool);
    // Each operation by the router of the function its tag names, as API
    // Gateway sends it (the template and `cargo lambda watch` follow the tag).
    let function = |name: &str| {
        let router = shared::api::function_router(name, app.state.clone());
        TestApp::from_router(router.unwrap_or_else(|| panic!("no function {name}")))
    };
    let doc = committed();
    let all = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{role_name}", "admin");
        for method in &all {
            let op = item.get(method.as_str().to_lowercase());
            let documented = op.is_some();
            // A path belongs to one function: an undocumented method on it
            // goes there too.
            let any = item.as_object().unwrap().values().next().unwrap();
            let tag = op.unwrap_or(any)["tags"][0].as_str().unwrap();
            let response = function(tag)
                .call(method.clone(), &concrete, None, None)
                .await;
            if documented {
                operations += 1;
                assert_ne!(
                    response.code(),
                    Some("not_found"),
                    "{method} {path} is documented but not routed"
                );
                assert_ne!(
                    response.status, 405,
                    "{method} {path} is documented but not routed"
                );
            } else {
                assert_eq!(
                    response.status, 405,
                    "{method} {path} is routed but not documented"
                );
            }
        }
        // Every operation documents its error answers as problem+json.
        for (_, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("503"), "{path}");
            assert!(
                responses["503"]["content"]
                    .get("application/problem+json")
                    .is_some(),
                "{path}"
            );
        }
    }
    assert_eq!(operations, 55, "the API's operations");
}

#[test]
fn operation_ids_are_unique_and_every_response_names_its_request_id() {
    let doc = committed();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "{method} {path}: {id} repeats");
            for (status, response) in op["responses"].as_object().unwrap() {
                assert_eq!(
                    response["headers"]["x-request-id"]["required"], true,
                    "{method} {path} {status}"
                );
            }
        }
    }
    // The stateful links point at operations that exist.
    let login = &doc["paths"]["/v1/auth/login"]["post"]["responses"]["200"]["links"];
    for link in login.as_object().unwrap().values() {
        assert!(ids.contains(link["operationId"].as_str().unwrap()));
    }
    assert_eq!(login.as_object().unwrap().len(), 2);
}

#[test]
fn every_schema_reference_resolves() {
    let doc = committed();
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let prefix = "#/components/schemas/";
    let mut refs = 0;
    for piece in text.split(prefix).skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        assert!(schemas.contains_key(&name), "{prefix}{name} is not defined");
        refs += 1;
    }
    assert!(refs > 10, "{refs} references");
}
