//! Which function serves which route. Each handler's `#[utoipa::path]` tag
//! names its function, so `openapi.json` is the one routing table: the SAM
//! template's HTTP API events and the `cargo lambda watch` router are
//! generated from it (`cargo xtask template`), and the tests check the
//! routers, the template and `Cargo.toml` against it.

use anyhow::{Context, Result};
use serde_json::Value;

/// The functions that serve HTTP routes, as their operations are tagged.
pub const HTTP_FUNCTIONS: [&str; 3] = ["auth", "users", "admin"];

/// One documented operation and the function that serves it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Operation {
    /// The function (the operation's tag).
    pub function: String,
    /// Upper case: `GET`.
    pub method: String,
    pub path: String,
}

/// Every operation of the OpenAPI document `doc`.
pub fn operations(doc: &Value) -> Result<Vec<Operation>> {
    let paths = doc["paths"]
        .as_object()
        .context("openapi.json has no paths")?;
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().context("a path item is not an object")?;
        for (method, op) in item {
            let function = op["tags"][0]
                .as_str()
                .filter(|tag| HTTP_FUNCTIONS.contains(tag))
                .with_context(|| format!("{method} {path}: its tag names no HTTP function"))?;
            out.push(Operation {
                function: function.to_string(),
                method: method.to_ascii_uppercase(),
                path: path.clone(),
            });
        }
    }
    Ok(out)
}

/// The head of the `cargo lambda watch` router table in `Cargo.toml`.
pub const WATCH_ROUTER: &str = "[workspace.metadata.lambda.watch.router]";

/// The `cargo lambda watch` router: every documented path to its function
/// (the table that ends `Cargo.toml`).
pub fn watch_router(operations: &[Operation]) -> String {
    let mut table = format!("{WATCH_ROUTER}\n");
    let mut seen = std::collections::BTreeSet::new();
    for op in operations {
        if seen.insert(&op.path) {
            table.push_str(&format!("\"{}\" = \"{}\"\n", op.path, op.function));
        }
    }
    table
}
