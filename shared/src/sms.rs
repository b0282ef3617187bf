//! Outgoing text messages (phone verification codes). The `outbox`
//! transport writes each message as one JSON file `{"to", "text"}` (local
//! use and tests), like mail; `sns` sends through Amazon SNS.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::config::{ConfigError, parse};

/// Where text messages go (`SMS_TRANSPORT`, `SMS_OUTBOX_DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsTransport {
    Outbox(PathBuf),
    Sns,
}

/// The phone-verification settings.
#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub transport: SmsTransport,
    /// `PHONE_CODES_PER_HOUR`: codes sent per number, and per user, per hour.
    pub codes_per_hour: u32,
    /// `SMS_MAX_PER_HOUR`: codes the whole service sends per hour (a cost
    /// ceiling against SMS pumping); beyond it, 503 with `Retry-After`.
    pub max_per_hour: u32,
}

impl SmsConfig {
    pub(crate) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let transport = match get("SMS_TRANSPORT").as_deref() {
            None | Some("outbox") => SmsTransport::Outbox(
                get("SMS_OUTBOX_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("target/sms-outbox")),
            ),
            Some("sns") => SmsTransport::Sns,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "SMS_TRANSPORT",
                    why: format!("expected `sns` or `outbox`, got `{other}`"),
                });
            }
        };
        Ok(Self {
            transport,
            codes_per_hour: parse(get, "PHONE_CODES_PER_HOUR", 3)?,
            max_per_hour: parse(get, "SMS_MAX_PER_HOUR", 1000)?,
        })
    }
}

/// One text message.
#[derive(Clone, Serialize)]
pub struct Sms {
    pub to: String,
    pub text: String,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text carries a code: never in a log line.
        f.debug_struct("Sms").field("text", &"<not shown>").finish()
    }
}

/// Sends text messages through the configured transport.
#[derive(Debug, Clone)]
pub enum Texter {
    Outbox(PathBuf),
    Sns(aws_sdk_sns::Client),
}

impl Texter {
    pub fn new(
        transport: &SmsTransport,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> anyhow::Result<Self> {
        match transport {
            SmsTransport::Outbox(dir) => Ok(Self::Outbox(dir.clone())),
            SmsTransport::Sns => {
                let sdk = sdk.context("SMS_TRANSPORT=sns needs the AWS configuration")?;
                Ok(Self::Sns(aws_sdk_sns::Client::new(sdk)))
            }
        }
    }

    /// Sends `sms`; the error names the transport, never the message.
    pub async fn send(&self, sms: &Sms) -> anyhow::Result<()> {
        match self {
            Self::Outbox(dir) => crate::mail::write_to_outbox(dir, sms).await,
            Self::Sns(client) => {
                client
                    .publish()
                    .phone_number(&sms.to)
                    .message(&sms.text)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("SNS: {}", aws_sdk_sns::error::DisplayErrorContext(e))
                    })?;
                Ok(())
            }
        }
    }
}
