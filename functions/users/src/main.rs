//! The users Lambda function: the users router of the common crate behind API Gateway.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http(shared::api::users_router).await
}
