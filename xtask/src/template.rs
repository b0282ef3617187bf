//! `cargo xtask template`: writes `template.yaml` from `deploy/template.head.yaml`
//! and the operations of `openapi.json`, so the HTTP API's routes are
//! exactly the routers' routes, each sent to its function.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// The function serving `path`, by the API's routing table (docs/api.md).
pub fn function_of(path: &str) -> &'static str {
    if path.starts_with("/v1/users") {
        "users"
    } else if path.starts_with("/v1/admin/") {
        "admin"
    } else {
        "auth"
    }
}

fn title(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A CloudFormation logical id for an operation: `PostV1AuthRegister`.
fn event_name(method: &str, path: &str) -> String {
    let mut name = title(&method.to_ascii_lowercase());
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        name.push_str(&title(part));
    }
    name
}

const HTTP_FUNCTIONS: [&str; 3] = ["auth", "users", "admin"];

pub fn generate(root: &Path) -> Result<()> {
    let head = std::fs::read_to_string(root.join("deploy/template.head.yaml"))
        .context("reading deploy/template.head.yaml")?;
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("openapi.json")).context("reading openapi.json")?,
    )?;
    let paths = doc["paths"]
        .as_object()
        .context("openapi.json has no paths")?;
    let mut out = head;
    for function in HTTP_FUNCTIONS {
        let logical = format!("{}Function", title(function));
        let ses = "            - Effect: Allow\n              Action: ses:SendEmail\n              Resource: !Sub \"arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*\"\n";
        write!(
            out,
            r#"  {logical}:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: {function}
    DependsOn: SchemaMigrations
    Properties:
      CodeUri: .
      Description: The {function} routes of the User Management API
      LoggingConfig:
        LogGroup: !Ref {logical}Logs
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource:
                - !Ref AppDbSecret
                - !Ref JwtSecret
            - Effect: Allow
              Action: elasticache:DescribeReplicationGroups
              Resource: !Sub "arn:${{AWS::Partition}}:elasticache:${{AWS::Region}}:${{AWS::AccountId}}:replicationgroup:${{Cache}}"
{ses}      Events:
"#
        )?;
        for (path, item) in paths {
            if function_of(path) != function {
                continue;
            }
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_none() {
                    continue;
                }
                let upper = method.to_ascii_uppercase();
                write!(
                    out,
                    "        {}:\n          Type: HttpApi\n          Properties:\n            ApiId: !Ref HttpApi\n            Method: {upper}\n            Path: {path}\n",
                    event_name(method, path)
                )?;
            }
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
    out.push_str(&TAIL.replace("{schema_version}", &schema_version));
    std::fs::write(root.join("template.yaml"), out).context("writing template.yaml")?;
    Ok(())
}

const TAIL: &str = r#"  # Applies the embedded migrations on every deploy that brings new ones
  # (the cleanup binary answers Custom::Migrations); the HTTP functions depend
  # on it, so no new code serves before its schema exists.
  SchemaMigrations:
    Type: Custom::Migrations
    Properties:
      ServiceToken: !GetAtt CleanupFunction.Arn
      SchemaVersion: "{schema_version}"

  CleanupFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: cleanup
    Properties:
      CodeUri: .
      Description: Nightly cleanup of tokens, rate limits, anonymisation and audit partitions
      MemorySize: 512
      Timeout: 900
      ReservedConcurrentExecutions: 1
      LoggingConfig:
        LogGroup: !Ref CleanupFunctionLogs
      # The owner role: the job creates and drops audit partitions, and on
      # deploy gives user_management_app the password of AppDbSecret.
      Environment:
        Variables:
          DB_SECRET_ARN: !If [CreateDatabase, !Ref DbSecret, !Ref ExistingDbSecretArn]
          APP_DB_SECRET_ARN: !Ref AppDbSecret
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource:
                - !If [CreateDatabase, !Ref DbSecret, !Ref ExistingDbSecretArn]
                - !Ref AppDbSecret
      Events:
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 2 * * ? *)
            ScheduleExpressionTimezone: !Ref ScheduleTimezone
            RetryPolicy:
              MaximumRetryAttempts: 2

  AuthFunctionLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-auth"
      RetentionInDays: !Ref LogRetentionDays
  UsersFunctionLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-users"
      RetentionInDays: !Ref LogRetentionDays
  AdminFunctionLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-admin"
      RetentionInDays: !Ref LogRetentionDays
  CleanupFunctionLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/aws/lambda/${AWS::StackName}-cleanup"
      RetentionInDays: !Ref LogRetentionDays

  ApiServerErrorsAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: The API answered 5xx
      Namespace: AWS/ApiGateway
      MetricName: 5xx
      Dimensions:
        - Name: ApiId
          Value: !Ref HttpApi
      Statistic: Sum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 5
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
  ApiLatencyAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: API p99 latency above 1 s
      Namespace: AWS/ApiGateway
      MetricName: Latency
      Dimensions:
        - Name: ApiId
          Value: !Ref HttpApi
      ExtendedStatistic: p99
      Period: 300
      EvaluationPeriods: 3
      Threshold: 1000
      ComparisonOperator: GreaterThanThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
  FunctionErrorsAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: A function failed (any of the four)
      Namespace: AWS/Lambda
      MetricName: Errors
      Statistic: Sum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
  FunctionThrottlesAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: Lambda throttled invocations
      Namespace: AWS/Lambda
      MetricName: Throttles
      Statistic: Sum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
  CleanupErrorsAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: The nightly cleanup failed
      Namespace: AWS/Lambda
      MetricName: Errors
      Dimensions:
        - Name: FunctionName
          Value: !Ref CleanupFunction
      Statistic: Sum
      Period: 86400
      EvaluationPeriods: 1
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]

  RefreshReuseAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: A rotated refresh token was replayed (possible token theft)
      Namespace: UserManagementApi
      MetricName: RefreshReuseDetections
      Dimensions:
        - Name: Function
          Value: !Ref AuthFunction
      Statistic: Sum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
  LoginFailureSpikeAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: Failed logins spiking (credential stuffing?)
      Namespace: UserManagementApi
      MetricName: LoginFailures
      Dimensions:
        - Name: Function
          Value: !Ref AuthFunction
      Statistic: Sum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 500
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
  LockoutSpikeAlarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmDescription: Many accounts locked out
      Namespace: UserManagementApi
      MetricName: Lockouts
      Dimensions:
        - Name: Function
          Value: !Ref AuthFunction
      Statistic: Sum
      Period: 300
      EvaluationPeriods: 1
      Threshold: 50
      ComparisonOperator: GreaterThanOrEqualToThreshold
      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]

Outputs:
  ApiUrl:
    Description: Base URL of the API
    Value: !Sub "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"
  JwtSecretArn:
    Description: Put the RSA signing key (PEM) here after the first deploy
    Value: !Ref JwtSecret
"#;
