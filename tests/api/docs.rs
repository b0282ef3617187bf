//! The repository's own documentation stays true: every file it names
//! exists, and the route tables of `docs/api.md` list exactly the
//! operations of `openapi.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Markdown files a reader of the repository reads.
fn docs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["README.md", "CONTRIBUTING.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root().join(f))
        .collect();
    let dir = std::fs::read_dir(root().join("docs")).expect("docs/ exists");
    files.extend(
        dir.flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    files
}

/// Backticked spans that look like repository paths: a known top-level
/// folder or a root file, without spaces, globs or placeholders.
fn named_paths(text: &str) -> Vec<String> {
    const TOP: [&str; 11] = [
        "shared/",
        "functions/",
        "migrations/",
        "tests/",
        "xtask/",
        "perf/",
        "docs/",
        "deploy/",
        ".ci/",
        ".sqlx/",
        "examples/",
    ];
    const FILES: [&str; 8] = [
        "Cargo.toml",
        "README.md",
        "CONTRIBUTING.md",
        "BENCHMARKS.md",
        "template.yaml",
        "samconfig.toml",
        "openapi.json",
        "clippy.toml",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|span| span.trim_end_matches(['.', ',', ':']))
        .filter(|span| TOP.iter().any(|t| span.starts_with(t)) || FILES.contains(span))
        .filter(|span| !span.contains([' ', '*', '<', '>', '{', '$', '…']))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_file_a_doc_names_exists() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        let text = std::fs::read_to_string(&doc).expect("readable");
        for path in named_paths(&text) {
            checked += 1;
            // `shared/src/db/users.rs` or a folder; `file.rs:12` names a line.
            let file = path.split(':').next().unwrap_or(&path);
            if !root().join(file).exists() {
                missing.push(format!("{}: {path}", doc.display()));
            }
        }
    }
    assert!(checked > 50, "the docs name only {checked} paths");
    assert!(
        missing.is_empty(),
        "docs name files that do not exist: {missing:#?}"
    );
}

#[test]
fn the_api_doc_lists_exactly_the_routes_of_openapi_json() {
    let openapi: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("openapi.json")).expect("openapi.json"),
    )
    .expect("JSON");
    let mut served = BTreeSet::new();
    for (path, item) in openapi["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            served.insert(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    let api = std::fs::read_to_string(root().join("docs/api.md")).expect("docs/api.md");
    let documented: Vec<String> = api
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|cell| {
            ["GET ", "POST ", "PUT ", "PATCH ", "DELETE "]
                .iter()
                .any(|m| cell.starts_with(m))
        })
        .map(str::to_owned)
        .collect();
    let unique: BTreeSet<String> = documented.iter().cloned().collect();
    assert_eq!(unique.len(), documented.len(), "a route is listed twice");
    let undocumented: Vec<_> = served.difference(&unique).collect();
    let unknown: Vec<_> = unique.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/api.md misses {undocumented:?} and lists routes that do not exist: {unknown:?}"
    );
}
