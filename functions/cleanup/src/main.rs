//! The cleanup Lambda function, fired by the EventBridge schedule at 02:00 UTC.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_cleanup().await
}
