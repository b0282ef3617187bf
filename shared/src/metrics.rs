//! Application metrics as CloudWatch Embedded Metric Format log lines: one
//! JSON line on stdout per data point, turned into metrics by CloudWatch
//! Logs with no API call. On in Lambda (or with `METRICS=emf`), off elsewhere.

use std::io::Write;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "UserManagementApi";

/// The business events counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Registration,
    LoginSuccess,
    LoginFailure,
    Lockout,
    Refresh,
    RefreshReuse,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Self::Registration => "Registrations",
            Self::LoginSuccess => "LoginSuccesses",
            Self::LoginFailure => "LoginFailures",
            Self::Lockout => "Lockouts",
            Self::Refresh => "Refreshes",
            Self::RefreshReuse => "RefreshReuseDetections",
        }
    }
}

fn function() -> Option<&'static str> {
    static FUNCTION: OnceLock<Option<String>> = OnceLock::new();
    FUNCTION
        .get_or_init(|| {
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok().or_else(|| {
                (std::env::var("METRICS").as_deref() == Ok("emf")).then(|| "local".to_string())
            })
        })
        .as_deref()
}

/// One EMF document: `metrics` are (name, value, unit), `dimensions` the
/// dimension names and values.
pub fn emf_line(
    metrics: &[(&str, f64, &str)],
    dimensions: &[(&str, &str)],
    timestamp_ms: i64,
) -> String {
    let mut doc = Map::new();
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (key, value) in dimensions {
        doc.insert((*key).into(), Value::from(*value));
    }
    for (name, value, _) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

fn emit(metrics: &[(&str, f64, &str)], extra: &[(&str, &str)]) {
    let Some(function) = function() else { return };
    let mut dimensions = vec![("Function", function)];
    dimensions.extend_from_slice(extra);
    let line = emf_line(metrics, &dimensions, chrono::Utc::now().timestamp_millis());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Counts one business event.
pub fn count(event: Event) {
    emit(&[(event.name(), 1.0, "Count")], &[]);
}

/// Records one served request: latency, and whether it was a server error.
pub fn request(route: &str, status: u16, millis: f64) {
    let error = if status >= 500 { 1.0 } else { 0.0 };
    emit(
        &[
            ("Latency", millis, "Milliseconds"),
            ("ServerErrors", error, "Count"),
        ],
        &[("Route", route)],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_embedded_metric_format() {
        let line = emf_line(
            &[("Latency", 1.5, "Milliseconds")],
            &[("Function", "auth"), ("Route", "POST /v1/auth/login")],
            1_700_000_000_000,
        );
        let doc: Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Function", "Route"]]));
        assert_eq!(
            directive["Metrics"][0],
            json!({"Name": "Latency", "Unit": "Milliseconds"})
        );
        assert_eq!(doc["Latency"], 1.5);
        assert_eq!(doc["Route"], "POST /v1/auth/login");
    }
}
