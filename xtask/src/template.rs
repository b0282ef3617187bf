//! `cargo xtask template`: writes `template.yaml` from the YAML pieces in
//! `deploy/` and the operations of `openapi.json`, so the HTTP API's routes
//! are exactly the routers' routes, each sent to the function its tag names;
//! and rewrites the `cargo lambda watch` router that ends `Cargo.toml`.
//!
//! `template.head.yaml` (parameters, network, database, cache, API), then
//! `template.function.yaml` once per HTTP function (`{Logical}`,
//! `{function}`) with its routes as events, then `template.tail.yaml` (the
//! migrations, the cleanup function, log groups, outputs) with
//! `{schema_version}` (the newest migration) and `{alarms}` (from [`ALARMS`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use xtask::routes::{self, HTTP_FUNCTIONS, Operation};

fn title(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A CloudFormation logical id for an operation: `PostV1AuthRegister`.
fn event_name(op: &Operation) -> String {
    let mut name = title(&op.method.to_ascii_lowercase());
    for part in op.path.split(|c: char| !c.is_ascii_alphanumeric()) {
        name.push_str(&title(part));
    }
    name
}

/// What an alarm watches: (dimension name, `!Ref` target) or none.
type Dimension = Option<(&'static str, &'static str)>;

/// One CloudWatch alarm: name, description, namespace, metric, dimension,
/// statistic (`p99` is an extended one), period (s), evaluation periods,
/// threshold, comparison. docs/operations.md says what each means and what
/// to do.
type Alarm = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Dimension,
    &'static str,
    u32,
    u32,
    u32,
    &'static str,
);

const AT_LEAST: &str = "GreaterThanOrEqualToThreshold";

/// The alarms, one row each.
#[rustfmt::skip]
pub const ALARMS: [Alarm; 6] = [
    ("ApiServerErrorsAlarm", "The API answered 5xx", "AWS/ApiGateway", "5xx", Some(("ApiId", "HttpApi")), "Sum", 300, 1, 5, AT_LEAST),
    ("ApiLatencyAlarm", "API p99 latency above 1 s", "AWS/ApiGateway", "Latency", Some(("ApiId", "HttpApi")), "p99", 300, 3, 1000, "GreaterThanThreshold"),
    ("CleanupErrorsAlarm", "The nightly cleanup failed", "AWS/Lambda", "Errors", Some(("FunctionName", "CleanupFunction")), "Sum", 86400, 1, 1, AT_LEAST),
    ("RefreshReuseAlarm", "A rotated refresh token was replayed (possible token theft)", "UserManagementApi", "RefreshReuseDetections", Some(("Function", "AuthFunction")), "Sum", 300, 1, 1, AT_LEAST),
    ("LoginFailureSpikeAlarm", "Failed logins spiking (credential stuffing?)", "UserManagementApi", "LoginFailures", Some(("Function", "AuthFunction")), "Sum", 300, 1, 500, AT_LEAST),
    ("LockoutSpikeAlarm", "Many accounts locked out", "UserManagementApi", "Lockouts", Some(("Function", "AuthFunction")), "Sum", 300, 1, 50, AT_LEAST),
];

fn alarms() -> Result<String> {
    let mut out = String::new();
    for (
        name,
        description,
        namespace,
        metric,
        dimension,
        statistic,
        period,
        evaluations,
        threshold,
        comparison,
    ) in ALARMS
    {
        write!(
            out,
            "  {name}:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n      AlarmDescription: {description}\n      Namespace: {namespace}\n      MetricName: {metric}\n"
        )?;
        if let Some((dimension, target)) = dimension {
            write!(
                out,
                "      Dimensions:\n        - Name: {dimension}\n          Value: !Ref {target}\n"
            )?;
        }
        let statistic = match statistic.starts_with('p') {
            true => format!("ExtendedStatistic: {statistic}"),
            false => format!("Statistic: {statistic}"),
        };
        write!(
            out,
            "      {statistic}\n      Period: {period}\n      EvaluationPeriods: {evaluations}\n      Threshold: {threshold}\n      ComparisonOperator: {comparison}\n      TreatMissingData: notBreaching\n      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]\n"
        )?;
    }
    Ok(out)
}

fn read(root: &Path, name: &str) -> Result<String> {
    std::fs::read_to_string(root.join(name)).with_context(|| format!("reading {name}"))
}

pub fn generate(root: &Path) -> Result<()> {
    let doc: serde_json::Value = serde_json::from_str(&read(root, "openapi.json")?)?;
    let operations = routes::operations(&doc)?;
    let function = read(root, "deploy/template.function.yaml")?;
    let mut out = read(root, "deploy/template.head.yaml")?;
    for name in HTTP_FUNCTIONS {
        out.push_str(
            &function
                .replace("{Logical}", &title(name))
                .replace("{function}", name),
        );
        for op in operations.iter().filter(|op| op.function == name) {
            write!(
                out,
                "        {}:\n          Type: HttpApi\n          Properties:\n            ApiId: !Ref HttpApi\n            Method: {}\n            Path: {}\n",
                event_name(op),
                op.method,
                op.path
            )?;
        }
        out.push('\n');
    }
    let schema_version = std::fs::read_dir(root.join("migrations"))
        .context("reading migrations/")?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.split('_').next().map(str::to_owned))
        })
        .max()
        .context("no migrations")?;
    let tail = read(root, "deploy/template.tail.yaml")?
        .replace("{schema_version}", &schema_version)
        .replace("{alarms}", &alarms()?);
    out.push_str(&tail);
    std::fs::write(root.join("template.yaml"), out).context("writing template.yaml")?;

    // The `cargo lambda watch` router is the last table of Cargo.toml.
    let manifest = read(root, "Cargo.toml")?;
    let head = manifest
        .split_once(routes::WATCH_ROUTER)
        .map_or(manifest.as_str(), |(head, _)| head);
    let manifest = format!("{head}{}", routes::watch_router(&operations));
    std::fs::write(root.join("Cargo.toml"), manifest).context("writing Cargo.toml")?;
    Ok(())
}
