//! Outgoing mail. The `outbox` transport writes each message as one JSON file
//! `{"to", "subject", "text"}` (local use and tests); `ses` sends through
//! Amazon SES v2. The messages themselves are in [`templates`].

pub mod templates;

use std::path::PathBuf;

use anyhow::Context;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use serde::Serialize;

use crate::config::MailTransport;

/// One message.
#[derive(Debug, Clone, Serialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Writes `message` into the outbox folder `dir` as one JSON file, named
/// so that the files sort by time, and renamed into place whole (a reader
/// never sees half a message). Mail and text messages both use it.
pub(crate) async fn write_to_outbox(
    dir: &std::path::Path,
    message: &impl Serialize,
) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let name = format!(
        "{}-{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
        uuid::Uuid::new_v4()
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, serde_json::to_vec_pretty(message)?).await?;
    tokio::fs::rename(&tmp, dir.join(name)).await?;
    Ok(())
}

/// Sends mail through the configured transport.
#[derive(Debug, Clone)]
pub enum Mailer {
    Outbox(PathBuf),
    Ses {
        client: aws_sdk_sesv2::Client,
        from: String,
    },
}

impl Mailer {
    pub fn new(
        transport: &MailTransport,
        from: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> anyhow::Result<Self> {
        match transport {
            MailTransport::Outbox(dir) => Ok(Self::Outbox(dir.clone())),
            MailTransport::Ses => {
                let sdk = sdk.context("MAIL_TRANSPORT=ses needs the AWS configuration")?;
                Ok(Self::Ses {
                    client: aws_sdk_sesv2::Client::new(sdk),
                    from: from.to_string(),
                })
            }
        }
    }

    /// Delivers `mail`. Failures are returned for the caller to log; a
    /// message is never logged itself (it carries a token).
    pub async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        match self {
            Self::Outbox(dir) => write_to_outbox(dir, mail).await,
            Self::Ses { client, from } => {
                let text = |data: &str| {
                    Content::builder()
                        .data(data)
                        .charset("UTF-8")
                        .build()
                        .context("building mail content")
                };
                let message = Message::builder()
                    .subject(text(&mail.subject)?)
                    .body(Body::builder().text(text(&mail.text)?).build())
                    .build();
                client
                    .send_email()
                    .from_email_address(from)
                    .destination(Destination::builder().to_addresses(&mail.to).build())
                    .content(EmailContent::builder().simple(message).build())
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("SES: {}", aws_sdk_sesv2::error::DisplayErrorContext(e))
                    })?;
                Ok(())
            }
        }
    }

    /// Sends `mail` after the transaction that created its token
    /// committed; a failure is logged (without the message, which carries a
    /// token) and the request still succeeds.
    pub async fn deliver(&self, mail: Mail) {
        if let Err(err) = self.send(&mail).await {
            tracing::error!(error = %err, subject = %mail.subject, "sending mail failed");
        }
    }
}
