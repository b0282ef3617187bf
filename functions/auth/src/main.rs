//! The auth Lambda function: the auth router of the common crate behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http(shared::api::auth_router).await
}
