//! Outgoing mail. The `outbox` transport writes each message as one JSON file
//! `{"to", "subject", "text"}` (local use and tests); SES arrives with the
//! AWS integration.

use std::path::PathBuf;

use serde::Serialize;

use crate::config::MailTransport;

/// One message.
#[derive(Debug, Clone, Serialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Sends mail through the configured transport.
#[derive(Debug, Clone)]
pub enum Mailer {
    Outbox(PathBuf),
}

impl Mailer {
    pub fn from_config(transport: &MailTransport) -> anyhow::Result<Self> {
        match transport {
            MailTransport::Outbox(dir) => Ok(Self::Outbox(dir.clone())),
            MailTransport::Ses => {
                anyhow::bail!("MAIL_TRANSPORT=ses is not available in this build; use outbox")
            }
        }
    }

    /// Delivers `mail`. Failures are returned for the caller to log; a
    /// message is never logged itself (it carries a token).
    pub async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        match self {
            Self::Outbox(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let name = format!(
                    "{}-{}.json",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                    uuid::Uuid::new_v4()
                );
                let tmp = dir.join(format!(".{name}.tmp"));
                tokio::fs::write(&tmp, serde_json::to_vec_pretty(mail)?).await?;
                tokio::fs::rename(&tmp, dir.join(name)).await?;
                Ok(())
            }
        }
    }
}
