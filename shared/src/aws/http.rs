//! The AWS SDK's HTTP client: hyper 1 over rustls with ring and HTTP/1.1
//! only, the stack the rest of the crate already links (the SDK's own
//! client brings HTTP/2 and a second set of TLS features: about 0.4 MB of
//! every Lambda binary: auth 9,962,800 → 9,164,656 bytes in a plain release
//! build). Server certificates are checked against the bundled Mozilla roots
//! (webpki-roots, which include Amazon's), as the CloudFormation response
//! does. Timeouts: the connect timeout the SDK asks for; the operation
//! timeout bounds the rest.

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

/// The crate's outbound HTTPS connector (the SDK's client, the migration
/// job's CloudFormation response): HTTP/1.1, webpki roots, TCP_NODELAY.
pub(crate) fn https(connect_timeout: Option<Duration>) -> HttpsConnector<TcpConnector> {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp)
}

/// The client for [`aws_config::ConfigLoader::http_client`].
pub fn client() -> SharedHttpClient {
    SharedHttpClient::new(Hyper1Client)
}

#[derive(Debug)]
struct Hyper1Client;

impl HttpClient for Hyper1Client {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Hyper1Connector::new(settings.connect_timeout()))
    }
}

#[derive(Debug, Clone)]
struct Hyper1Connector {
    client: Client<HttpsConnector<TcpConnector>, SdkBody>,
}

impl Hyper1Connector {
    fn new(connect_timeout: Option<Duration>) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(https(connect_timeout)),
        }
    }
}

impl HttpConnector for Hyper1Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.request(request).await.map_err(|e| {
                if is_transient(&e) {
                    ConnectorError::io(e.into())
                } else {
                    ConnectorError::other(e.into(), None)
                }
            })?;
            let (parts, body) = response.into_parts();
            let response = axum::http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Failures the SDK may retry (its `io` class): the connection could not be
/// made, or it broke before the whole response came (reset, closed early,
/// any I/O error underneath).
fn is_transient(err: &hyper_util::client::legacy::Error) -> bool {
    if err.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled())
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    /// What the SDK's client would see from a server that is gone, or that
    /// hangs up before answering: both transient, so the SDK retries them.
    #[tokio::test]
    async fn refused_and_dropped_connections_are_transient() {
        let client: Client<_, Empty<axum::body::Bytes>> =
            Client::builder(TokioExecutor::new()).build(TcpConnector::new());
        let get = |port: u16| {
            let uri = format!("http://127.0.0.1:{port}/");
            let request = axum::http::Request::get(uri)
                .body(Empty::new())
                .expect("request");
            client.request(request)
        };

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let refused = get(port).await.expect_err("nothing listens");
        assert!(is_transient(&refused), "{refused:?}");

        let rude = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = rude.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((stream, _)) = rude.accept().await {
                drop(stream);
            }
        });
        let dropped = get(port).await.expect_err("hung up");
        assert!(is_transient(&dropped), "{dropped:?}");
    }
}
