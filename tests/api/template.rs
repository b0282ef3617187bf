//! template.yaml and Cargo.toml against the code: the HTTP API's routes are
//! exactly the documented (and routed) operations, each to the function its
//! tag names, and `cargo lambda watch` routes them alike;
//! the schedule, concurrency and architecture are what docs/operations.md says;
//! the access log, the dead-letter queue and the cleanup alarms are there.

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
    // No reservation (a quota of 10 refuses any); the job's advisory lock
    // keeps overlapping runs from both working.
    assert!(cleanup["ReservedConcurrentExecutions"].is_badvalue());
    let job = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/src/jobs/cleanup.rs"
    ))
    .unwrap();
    assert!(job.contains("pg_try_advisory_lock"));
    // The first migration waits for the database, its proxy targets and the
    // network the function needs.
    let migrations = format!(
        "{:?}",
        template["Resources"]["SchemaMigrations"]["Properties"]
    );
    for needed in [
        "DbWriter",
        "DbProxyTargets",
        "SecretsManagerEndpoint",
        "S3Endpoint",
        "PrivateSubnetARoutes",
        "DataSecurityGroupSelfIngress",
    ] {
        assert!(migrations.contains(needed), "{needed}: {migrations}");
    }
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

fn strings(yaml: &Yaml) -> Vec<String> {
    match yaml {
        Yaml::Array(items) => items.iter().flat_map(strings).collect(),
        Yaml::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[test]
fn the_api_writes_an_access_log_keyed_by_the_functions_request_id() {
    let template = template();
    let settings = &template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"];
    let format: Value =
        serde_json::from_str(settings["Format"].as_str().expect("an access log format"))
            .expect("the format is one JSON object per line");
    // The id the functions log (span.request_id) and answer (x-request-id).
    assert_eq!(format["requestId"], "$context.requestId");
    for field in ["routeKey", "status", "latencyMs", "sourceIp"] {
        assert!(format.get(field).is_some(), "{field}");
    }
    let group = &template["Resources"]["ApiAccessLogs"];
    assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"));
    assert_eq!(
        group["Properties"]["RetentionInDays"].as_str(),
        Some("LogRetentionDays")
    );
    assert!(strings(&settings["DestinationArn"]).contains(&"ApiAccessLogs.Arn".to_string()));
}

#[test]
fn a_cleanup_that_fails_to_run_lands_in_a_queue_and_a_missed_one_alarms() {
    let template = template();
    let resources = &template["Resources"];
    let nightly = &resources["CleanupFunction"]["Properties"]["Events"]["Nightly"]["Properties"];
    assert_eq!(
        nightly["RetryPolicy"]["MaximumRetryAttempts"].as_i64(),
        Some(2)
    );
    let queue_arn = strings(&nightly["DeadLetterConfig"]["Arn"]).concat();
    let queue = queue_arn.trim_end_matches(".Arn");
    assert_eq!(
        resources[queue]["Type"].as_str(),
        Some("AWS::SQS::Queue"),
        "{queue_arn}"
    );
    // The schedule's role may deliver there.
    let role = strings(&nightly["RoleArn"]).concat();
    let role = role.trim_end_matches(".Arn");
    let granted = format!("{:?}", resources[role]["Properties"]["Policies"]);
    assert!(
        granted.contains("sqs:SendMessage") && granted.contains(&queue_arn),
        "{granted}"
    );
    let depth = &resources["CleanupDeadLetterAlarm"]["Properties"];
    assert_eq!(
        depth["MetricName"].as_str(),
        Some("ApproximateNumberOfMessagesVisible")
    );
    assert!(strings(&depth["Dimensions"][0]["Value"]).contains(&format!("{queue}.QueueName")));

    // The success the alarm waits for is the line the cleanup logs.
    let filter = &resources["CleanupSucceededMetric"]["Properties"];
    let pattern = filter["FilterPattern"].as_str().unwrap();
    let logged = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/src/jobs/cleanup.rs"
    ))
    .unwrap();
    assert!(logged.contains(pattern), "cleanup.rs logs {pattern}");
    let missed = &resources["CleanupMissedAlarm"]["Properties"];
    let metric = &filter["MetricTransformations"][0];
    assert_eq!(missed["MetricName"], metric["MetricName"]);
    assert_eq!(missed["Namespace"], metric["MetricNamespace"]);
    assert_eq!(missed["TreatMissingData"].as_str(), Some("breaching"));
    let hours = missed["Period"].as_i64().unwrap() * missed["EvaluationPeriods"].as_i64().unwrap();
    assert_eq!(hours, 26 * 3600);
}

#[test]
fn http_functions_reserve_concurrency_only_when_asked() {
    let template = template();
    assert_eq!(
        template["Parameters"]["HttpFunctionReservedConcurrency"]["Default"].as_str(),
        Some("")
    );
    for function in ["AuthFunction", "UsersFunction", "AdminFunction"] {
        let reserved =
            strings(&template["Resources"][function]["Properties"]["ReservedConcurrentExecutions"]);
        assert_eq!(
            reserved,
            [
                "HasReservedConcurrency",
                "HttpFunctionReservedConcurrency",
                "AWS::NoValue"
            ],
            "{function}"
        );
    }
}

#[test]
fn every_skipped_policy_check_says_why_and_the_database_is_monitored() {
    let template = template();
    let mut skipped = 0;
    for (name, resource) in template["Resources"].as_hash().unwrap() {
        if let Some(skips) = resource["Metadata"]["checkov"]["skip"].as_vec() {
            for skip in skips {
                let id = skip["id"].as_str().unwrap_or_default();
                let why = skip["comment"].as_str().unwrap_or_default();
                assert!(
                    id.starts_with("CKV_") && why.len() > 20,
                    "{name:?}: {id} needs a reason"
                );
                skipped += 1;
            }
        }
    }
    assert_eq!(
        skipped, 5,
        "CKV_AWS_116 on the four functions, CKV_AWS_115 on the cleanup"
    );
    for instance in ["DbWriter", "DbReader"] {
        let props = &template["Resources"][instance]["Properties"];
        assert_eq!(props["MonitoringInterval"].as_i64(), Some(60), "{instance}");
    }
}

/// The AWS APIs the binaries call: every `aws_sdk_<crate>::Client` built in
/// shared/src and functions/, as the interface endpoint service it needs.
fn aws_apis_the_code_calls() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = std::fs::read_to_string(&path).unwrap();
                for (at, _) in code.match_indices("aws_sdk_") {
                    let rest = &code[at + "aws_sdk_".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .collect();
                    let built = rest[name.len()..].starts_with("::Client::new")
                        || rest[name.len()..].starts_with("::Client::from_conf");
                    if built {
                        found.insert(name);
                    }
                }
            }
        }
    }
    let mut crates = BTreeSet::new();
    for dir in ["shared/src", "functions"] {
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dir),
            &mut crates,
        );
    }
    crates
        .into_iter()
        .map(|name| match name.as_str() {
            "secretsmanager" | "elasticache" | "sns" | "sts" | "kms" => name.clone(),
            "sesv2" | "ses" => "email".to_string(),
            other => panic!(
                "aws_sdk_{other}: add its interface endpoint to template.head.yaml \
                     and its service name here"
            ),
        })
        .collect()
}

#[test]
fn the_created_network_has_an_endpoint_for_every_aws_api_the_code_calls() {
    let needed = aws_apis_the_code_calls();
    // Secrets Manager, ElastiCache, SES and SNS at the time of writing: a
    // scan that found nothing would prove nothing.
    assert!(needed.len() >= 4, "{needed:?}");
    let template = template();
    assert_eq!(
        strings(&template["Conditions"]["CreateNetwork"]).concat(),
        "SubnetIds",
        "no subnets given creates the network"
    );
    assert_eq!(
        template["Parameters"]["SubnetIds"]["Default"].as_str(),
        Some("")
    );
    let mut endpoints = BTreeSet::new();
    for (name, resource) in template["Resources"].as_hash().unwrap() {
        if resource["Type"].as_str() != Some("AWS::EC2::VPCEndpoint") {
            continue;
        }
        let props = &resource["Properties"];
        assert_eq!(
            resource["Condition"].as_str(),
            Some("CreateNetwork"),
            "{name:?}"
        );
        let service = props["ServiceName"].as_str().unwrap();
        let service = service
            .strip_prefix("com.amazonaws.${AWS::Region}.")
            .unwrap_or_else(|| panic!("{service}"));
        let kind = props["VpcEndpointType"].as_str().unwrap();
        if kind == "Interface" {
            assert_eq!(props["PrivateDnsEnabled"].as_bool(), Some(true), "{name:?}");
        }
        endpoints.insert((kind.to_string(), service.to_string()));
    }
    let mut expected: BTreeSet<_> = needed
        .into_iter()
        .map(|service| ("Interface".to_string(), service))
        .collect();
    // The migration resource answers CloudFormation at a pre-signed S3 URL.
    let migrate = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/src/jobs/migrate.rs"
    ))
    .unwrap();
    assert!(migrate.contains("ResponseURL"));
    expected.insert(("Gateway".to_string(), "s3".to_string()));
    assert_eq!(endpoints, expected);
}

#[test]
fn the_data_tier_takes_only_the_functions_and_the_functions_take_nothing() {
    let template = template();
    let resources = &template["Resources"];
    let functions = &resources["FunctionSecurityGroup"]["Properties"];
    assert!(functions["SecurityGroupIngress"].is_badvalue());
    let data = &resources["DataSecurityGroup"]["Properties"];
    let mut ports = BTreeSet::new();
    for rule in data["SecurityGroupIngress"].as_vec().unwrap() {
        assert_eq!(
            strings(&rule["SourceSecurityGroupId"]),
            ["FunctionSecurityGroup"]
        );
        assert!(rule["CidrIp"].is_badvalue());
        ports.insert(rule["FromPort"].as_i64().unwrap());
    }
    assert_eq!(ports, BTreeSet::from([5432, 6379]));
    // Every function and the data tier sit in the created subnets and groups.
    let vpc = &template["Globals"]["Function"]["VpcConfig"];
    assert_eq!(
        strings(&vpc["SecurityGroupIds"]),
        ["CreateNetwork", "FunctionSecurityGroup", "SecurityGroupIds"]
    );
    for (resource, property) in [
        ("Cache", "SecurityGroupIds"),
        ("DbProxy", "VpcSecurityGroupIds"),
        ("DbCluster", "VpcSecurityGroupIds"),
    ] {
        assert_eq!(
            strings(&resources[resource]["Properties"][property]),
            ["CreateNetwork", "DataSecurityGroup", "DataSecurityGroupIds"],
            "{resource}"
        );
    }
}

#[test]
fn a_given_kms_key_seals_secrets_logs_queue_database_cache_and_environment() {
    let template = template();
    let conditional = ["HasKmsKey", "KmsKeyArn", "AWS::NoValue"];
    let mut sealed = 0;
    for (name, resource) in template["Resources"].as_hash().unwrap() {
        let property = match resource["Type"].as_str().unwrap() {
            "AWS::SecretsManager::Secret" | "AWS::Logs::LogGroup" => "KmsKeyId",
            "AWS::SQS::Queue" => "KmsMasterKeyId",
            _ => continue,
        };
        assert_eq!(
            strings(&resource["Properties"][property]),
            conditional,
            "{name:?}"
        );
        sealed += 1;
    }
    assert!(sealed >= 12, "{sealed}");
    for resource in ["DbCluster", "Cache"] {
        assert_eq!(
            strings(&template["Resources"][resource]["Properties"]["KmsKeyId"]),
            conditional,
            "{resource}"
        );
    }
    assert_eq!(
        strings(&template["Globals"]["Function"]["KmsKeyArn"]),
        conditional
    );
    // and whoever reads those secrets may decrypt with it.
    for function in ["AuthFunction", "CleanupFunction"] {
        let policies = format!(
            "{:?}",
            template["Resources"][function]["Properties"]["Policies"]
        );
        assert!(policies.contains("kms:Decrypt"), "{function}");
    }
}

#[test]
fn the_api_passes_paths_on_as_the_routers_know_them() {
    // A named stage would reach the functions as /dev/v1/... (lambda_http
    // keeps it), which no router serves.
    let template = template();
    assert_eq!(
        template["Resources"]["HttpApi"]["Properties"]["StageName"].as_str(),
        Some("$default")
    );
    // !If [HasCustomDomain, https://<domain>, the execute-api URL]: no stage.
    let urls = strings(&template["Outputs"]["ApiUrl"]["Value"]);
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(urls[2].ends_with("${AWS::URLSuffix}"), "{urls:?}");
    assert!(urls.iter().all(|url| !url.contains("Stage")), "{urls:?}");
}

#[test]
fn api_gateway_allows_the_same_origins_methods_and_headers_as_the_functions() {
    let template = template();
    let cors = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    // !If [HasCors, {...}, !Ref AWS::NoValue]
    assert_eq!(cors[0].as_str(), Some("HasCors"));
    let config = &cors[1];
    assert_eq!(
        strings(&config["AllowOrigins"]),
        [",", "CorsAllowedOrigins"]
    );
    assert_eq!(config["AllowCredentials"].as_bool(), Some(true));
    let methods: Vec<String> = shared::http::cors::METHODS
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(strings(&config["AllowMethods"]), methods);
    let headers: Vec<String> = shared::http::cors::allowed_headers()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(strings(&config["AllowHeaders"]), headers);
    assert_eq!(
        config["MaxAge"].as_i64(),
        i64::try_from(shared::http::cors::MAX_AGE.as_secs()).ok()
    );
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        env["CORS_ALLOWED_ORIGINS"].as_str(),
        Some("CorsAllowedOrigins")
    );
    assert_eq!(
        template["Parameters"]["CorsAllowedOrigins"]["Default"].as_str(),
        Some("")
    );
    // Cookie mode's custom domain, only when asked for; then the only way in.
    assert_eq!(
        strings(&template["Resources"]["HttpApi"]["Properties"]["DisableExecuteApiEndpoint"]),
        ["HasCustomDomain"]
    );
    for resource in ["ApiDomain", "ApiDomainMapping"] {
        assert_eq!(
            template["Resources"][resource]["Condition"].as_str(),
            Some("HasCustomDomain"),
            "{resource}"
        );
    }
}

#[test]
fn the_function_alarms_watch_this_stacks_functions_not_the_account() {
    let template = template();
    for alarm in ["FunctionErrorsAlarm", "FunctionThrottlesAlarm"] {
        let props = &template["Resources"][alarm]["Properties"];
        assert!(
            props["Dimensions"].is_badvalue(),
            "{alarm}: no account-wide metric"
        );
        let metrics = props["Metrics"].as_vec().unwrap();
        let mut watched: Vec<String> = metrics
            .iter()
            .filter_map(|m| {
                let dims = &m["MetricStat"]["Metric"]["Dimensions"][0];
                (dims["Name"].as_str() == Some("FunctionName"))
                    .then(|| dims["Value"].as_str().unwrap().to_string())
            })
            .collect();
        watched.sort();
        assert_eq!(
            watched,
            [
                "AdminFunction",
                "AuthFunction",
                "CleanupFunction",
                "UsersFunction"
            ],
            "{alarm}"
        );
        let total = metrics
            .iter()
            .find(|m| m["ReturnData"].as_bool() == Some(true))
            .unwrap();
        let expression = total["Expression"].as_str().unwrap();
        for id in ["auth", "users", "admin", "cleanup"] {
            assert!(
                expression.contains(&format!("FILL({id}, 0)")),
                "{expression}"
            );
        }
    }
}
