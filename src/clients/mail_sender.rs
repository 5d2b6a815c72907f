//! `MailSender`: delivers a login code. Never retried: a duplicate mail is worse than a 503 the
//! user can retry, and the `Idempotency-Key` lets the mail service drop duplicates of its own.

use async_trait::async_trait;
use serde::Serialize;

use super::{call, Error, Retry};
use crate::config::RestTarget;
use crate::domain::{ChallengeId, Email, Locale, LoginCode};

const SERVICE: &str = "mail_service";

/// One login-code delivery.
pub struct LoginCodeMail<'a> {
    pub email: &'a Email,
    pub code: &'a LoginCode,
    pub challenge_id: &'a ChallengeId,
    pub locale: Option<&'a Locale>,
}

#[async_trait]
pub trait MailSender: Send + Sync {
    async fn send(&self, delivery: &LoginCodeMail<'_>) -> Result<(), Error>;
}

/// Development and tests only: logs the delivery, code included, at `info`. The only place in
/// the service that ever logs a code.
pub struct StubMailSender;

#[async_trait]
impl MailSender for StubMailSender {
    async fn send(&self, delivery: &LoginCodeMail<'_>) -> Result<(), Error> {
        tracing::info!(
            challenge_id = %delivery.challenge_id,
            email = %delivery.email.masked(),
            code = delivery.code.as_str(),
            "stub mail sender: login code delivered"
        );
        Ok(())
    }
}

pub struct RestMailSender {
    http: reqwest::Client,
    target: RestTarget,
    /// The deliveries endpoint, resolved once.
    url: reqwest::Url,
}

#[derive(Serialize)]
struct DeliveryBody<'a> {
    email: &'a str,
    code: &'a str,
    challenge_id: &'a str,
    locale: Option<&'a str>,
}

impl RestMailSender {
    pub fn new(http: reqwest::Client, target: RestTarget) -> Self {
        let url = super::endpoint(
            &target.base_url,
            &["api", "v1", "internal", "login-code-deliveries"],
        );
        Self { http, target, url }
    }
}

#[async_trait]
impl MailSender for RestMailSender {
    async fn send(&self, delivery: &LoginCodeMail<'_>) -> Result<(), Error> {
        let url = &self.url;
        let body = DeliveryBody {
            email: delivery.email.as_str(),
            code: delivery.code.as_str(),
            challenge_id: delivery.challenge_id.as_str(),
            locale: delivery.locale.map(Locale::as_str),
        };
        let request = || {
            self.http
                .post(url.clone())
                .header("Idempotency-Key", delivery.challenge_id.as_str())
                .json(&body)
        };
        // Any 2xx is success, whatever its body (not read, so an empty one is no `bad_body`);
        // a 404 is a misrouted call, so a failure.
        let parse = |_: &[u8]| Ok(());
        call(
            SERVICE,
            request,
            self.target.request_timeout,
            Retry::Never,
            parse,
            || None,
        )
        .await
    }
}
