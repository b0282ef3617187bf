//! template.yaml and Cargo.toml against the code: the HTTP API's routes are
//! exactly the documented (and routed) operations, each to the function its
//! tag names, and `cargo lambda watch` routes them alike;
//! the schedule, concurrency and architecture are what docs/operations.md says.

use std::collections::BTreeSet;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn template() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
        .expect("template.yaml");
    YamlLoader::load_from_str(&text)
        .expect("template.yaml is YAML")
        .remove(0)
}

fn operations() -> Vec<xtask::routes::Operation> {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json")).unwrap(),
    )
    .unwrap();
    xtask::routes::operations(&doc).unwrap()
}

#[test]
fn the_http_api_routes_are_exactly_the_routers_routes() {
    let documented: BTreeSet<_> = operations()
        .into_iter()
        .map(|op| {
            let mut function = op.function;
            function[..1].make_ascii_uppercase();
            (format!("{function}Function"), op.method, op.path)
        })
        .collect();
    assert_eq!(documented.len(), 55);
    let template = template();
    let mut routed = BTreeSet::new();
    for (name, resource) in template["Resources"].as_hash().unwrap() {
        let name = name.as_str().unwrap();
        let Some(events) = resource["Properties"]["Events"].as_hash() else {
            continue;
        };
        for event in events.values() {
            if event["Type"].as_str() == Some("HttpApi") {
                let props = &event["Properties"];
                routed.insert((
                    name.to_string(),
                    props["Method"].as_str().unwrap().to_string(),
                    props["Path"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert_eq!(routed, documented, "regenerate with `cargo xtask template`");
}

#[test]
fn cargo_lambda_watch_routes_every_path_to_its_function() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    let router = xtask::routes::watch_router(&operations());
    assert!(
        manifest.ends_with(&router),
        "regenerate the router with `cargo xtask template`"
    );
    assert!(router.contains("\"/v1/admin/roles/{id}\" = \"admin\""));
}

#[test]
fn the_cleanup_runs_at_two_with_one_instance_and_functions_default_to_arm64() {
    let template = template();
    let cleanup = &template["Resources"]["CleanupFunction"]["Properties"];
    assert_eq!(cleanup["ReservedConcurrentExecutions"].as_i64(), Some(1));
    let nightly = &cleanup["Events"]["Nightly"];
    assert_eq!(nightly["Type"].as_str(), Some("ScheduleV2"));
    assert_eq!(
        nightly["Properties"]["ScheduleExpression"].as_str(),
        Some("cron(0 2 * * ? *)")
    );
    assert_eq!(
        template["Parameters"]["Architecture"]["Default"].as_str(),
        Some("arm64")
    );
    for function in [
        "AuthFunction",
        "UsersFunction",
        "AdminFunction",
        "CleanupFunction",
    ] {
        let resource = &template["Resources"][function];
        assert_eq!(
            resource["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{function}"
        );
    }
    assert_eq!(
        template["Globals"]["Function"]["Runtime"].as_str(),
        Some("provided.al2023")
    );
}
