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
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Self {
            client: Client::builder(TokioExecutor::new()).build(https),
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
                if e.is_connect() {
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
