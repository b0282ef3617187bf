//! template.yaml against the code: the HTTP API's routes are exactly the
//! documented (and routed) operations, each to the function of its prefix;
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

fn function_of(path: &str) -> &'static str {
    if path.starts_with("/v1/users") {
        "UsersFunction"
    } else if path.starts_with("/v1/admin/") {
        "AdminFunction"
    } else {
        "AuthFunction"
    }
}

#[test]
fn the_http_api_routes_are_exactly_the_routers_routes() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json")).unwrap(),
    )
    .unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((
                function_of(path).to_string(),
                method.to_uppercase(),
                path.clone(),
            ));
        }
    }
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
