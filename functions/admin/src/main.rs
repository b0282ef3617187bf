//! The admin Lambda function: the admin router of the common crate behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http(shared::api::admin_router).await
}
