//! Delivering one notification: pacing, bounded retries with backoff, `Retry-After`, and
//! errors that never carry a URL or a secret.
//!
//! The HTTP client sits behind [`Transport`] so the retry and pacing rules can be tested with
//! paused tokio time and a scripted transport; the real one is [`HttpTransport`] (reqwest).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deployer_core::ports::NotifyError;
use http::{HeaderName, HeaderValue, header};
use reqwest::Url;
use tokio::time::Instant;

use crate::config::{ConfigError, RetryPolicy};

/// Bytes of a response body kept for error messages.
const ANSWER_BODY_MAX: usize = 1024;
/// Characters of a response body quoted in an error.
const REASON_MAX: usize = 200;
/// Bound on connecting, within the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait after a 429 that names no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One POST to make.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) url: Url,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
}

impl Outgoing {
    /// A JSON POST.
    pub(crate) fn json(url: Url, body: Vec<u8>) -> Self {
        Self {
            url,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: body.into(),
        }
    }
}

/// What the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// `Retry-After` in seconds, when sent as a number.
    pub(crate) retry_after: Option<Duration>,
    /// The start of the body (Slack's errors are plain-text words like `channel_not_found`).
    pub(crate) body: String,
}

/// Why no answer came. Deliberately without detail: reqwest's errors embed the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportError {
    Timeout,
    Connect,
    Other,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timed out",
            Self::Connect => "could not connect",
            Self::Other => "request failed",
        })
    }
}

/// Sends one POST.
#[async_trait]
pub(crate) trait Transport: Send + Sync + fmt::Debug {
    async fn post(&self, request: &Outgoing) -> Result<Answer, TransportError>;
}

/// The real transport: reqwest with rustls, no redirects (a receiver cannot bounce us to an
/// internal address), bounded connect and request times.
#[derive(Debug, Clone)]
pub(crate) struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    pub(crate) fn new(field: &str, policy: &RetryPolicy) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.request_timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(policy.request_timeout))
            .user_agent(concat!("deployer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| ConfigError::new(field, "could not set up the HTTP client (TLS)"))?;
        Ok(Self { client })
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn post(&self, request: &Outgoing) -> Result<Answer, TransportError> {
        let mut builder = self
            .client
            .post(request.url.clone())
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                TransportError::Timeout
            } else if e.is_connect() {
                TransportError::Connect
            } else {
                TransportError::Other
            }
        };
        let mut response = builder.send().await.map_err(classify)?;
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let status = response.status().as_u16();
        let mut body = Vec::new();
        // A body that breaks off still leaves a status worth reporting.
        while body.len() < ANSWER_BODY_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(ANSWER_BODY_MAX);
        Ok(Answer {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Spaces messages at least `interval` apart; a 429 pushes the next slot back.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Takes the next free slot.
    fn take(&self) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + self.interval);
        slot
    }

    /// No message before `until`.
    fn defer(&self, until: Instant) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        *next = Some(next.map_or(until, |n| n.max(until)));
    }
}

/// What one attempt means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// The receiver will refuse it again (bad payload, unknown or archived channel, 404, ...).
    Permanent(String),
    /// Worth another try, after the receiver's `Retry-After` if it gave one.
    Retry(String, Option<Duration>),
}

fn classify(answer: &Answer) -> Verdict {
    let status = answer.status;
    match status {
        200..=299 => Verdict::Delivered,
        429 => Verdict::Retry(
            "HTTP 429 (rate limited)".to_owned(),
            Some(answer.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
        ),
        408 | 500..=599 => Verdict::Retry(format!("HTTP {status}"), answer.retry_after),
        _ => {
            let said: String = answer
                .body
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(REASON_MAX)
                .collect();
            Verdict::Permanent(if said.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {said}")
            })
        }
    }
}

/// Delivers notifications for one notifier under a [`RetryPolicy`].
#[derive(Debug)]
pub(crate) struct Delivery {
    name: &'static str,
    transport: Arc<dyn Transport>,
    policy: RetryPolicy,
    pacer: Option<Pacer>,
}

impl Delivery {
    pub(crate) fn new(
        name: &'static str,
        transport: Arc<dyn Transport>,
        policy: RetryPolicy,
        pace: Option<Duration>,
    ) -> Self {
        Self {
            name,
            transport,
            policy,
            pacer: pace.filter(|p| !p.is_zero()).map(Pacer::new),
        }
    }

    /// Sends `request`, retrying as the policy allows, within `policy.total`.
    pub(crate) async fn send(&self, request: &Outgoing) -> Result<(), NotifyError> {
        let policy = &self.policy;
        let deadline = Instant::now() + policy.total;
        let mut last = String::from("out of time before the first attempt");
        for attempt in 1..=policy.attempts {
            if let Some(pacer) = &self.pacer {
                let slot = pacer.take();
                if slot >= deadline {
                    last = format!("{last}; rate limit leaves no time to retry");
                    break;
                }
                tokio::time::sleep_until(slot).await;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let limit = policy.request_timeout.min(remaining);
            let verdict = match tokio::time::timeout(limit, self.transport.post(request)).await {
                Err(_) => Verdict::Retry(TransportError::Timeout.to_string(), None),
                Ok(Err(e)) => Verdict::Retry(e.to_string(), None),
                Ok(Ok(answer)) => classify(&answer),
            };
            match verdict {
                Verdict::Delivered => return Ok(()),
                Verdict::Permanent(reason) => {
                    return Err(NotifyError::Rejected {
                        notifier: self.name.to_owned(),
                        reason,
                    });
                }
                Verdict::Retry(reason, after) => {
                    tracing::debug!(notifier = self.name, attempt, "delivery failed: {reason}");
                    last = reason;
                    if attempt == policy.attempts {
                        break;
                    }
                    let resume = Instant::now() + after.unwrap_or_else(|| policy.backoff(attempt));
                    if resume >= deadline {
                        break;
                    }
                    match (&self.pacer, after) {
                        // The receiver's wait applies to every message, not only this one.
                        (Some(pacer), Some(_)) => pacer.defer(resume),
                        _ => tokio::time::sleep_until(resume).await,
                    }
                }
            }
        }
        Err(NotifyError::Undelivered {
            notifier: self.name.to_owned(),
            source: last.into(),
        })
    }
}

/// `scheme://host[:port]/…`: enough to tell which receiver, never a path that may hold a token.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/…", u.scheme()),
            (Some(host), None) => format!("{}://{host}/…", u.scheme()),
            _ => "<url>".to_owned(),
        },
        Err(_) => "<invalid url>".to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A transport that answers from a script and records when each request came.
    #[derive(Debug, Default)]
    pub(crate) struct ScriptedTransport {
        script: Mutex<VecDeque<Result<Answer, TransportError>>>,
        pub(crate) calls: Mutex<Vec<(Instant, Outgoing)>>,
    }

    impl ScriptedTransport {
        pub(crate) fn new(script: Vec<Result<Answer, TransportError>>) -> Arc<Self> {
            Arc::new(Self {
                script: Mutex::new(script.into()),
                calls: Mutex::default(),
            })
        }

        pub(crate) fn times(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().iter().map(|(t, _)| *t).collect()
        }
    }

    #[async_trait]
    impl Transport for ScriptedTransport {
        async fn post(&self, request: &Outgoing) -> Result<Answer, TransportError> {
            self.calls
                .lock()
                .unwrap()
                .push((Instant::now(), request.clone()));
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(answer(200, None, "ok")))
        }
    }

    pub(crate) fn answer(status: u16, retry_after: Option<u64>, body: &str) -> Answer {
        Answer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: body.to_owned(),
        }
    }

    fn request() -> Outgoing {
        Outgoing::json("http://127.0.0.1:1/x".parse().unwrap(), b"{}".to_vec())
    }

    fn offsets(start: Instant, times: &[Instant]) -> Vec<u64> {
        times
            .iter()
            .map(|t| (*t - start).as_millis() as u64)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_5xx_with_exponential_backoff_then_gives_up() {
        let transport = ScriptedTransport::new(vec![
            Ok(answer(500, None, "")),
            Ok(answer(502, None, "")),
            Ok(answer(503, None, "")),
        ]);
        let delivery = Delivery::new("test", transport.clone(), RetryPolicy::default(), None);
        let start = Instant::now();
        let err = delivery.send(&request()).await.unwrap_err();
        assert!(matches!(err, NotifyError::Undelivered { .. }), "{err}");
        assert_eq!(offsets(start, &transport.times()), vec![0, 1000, 3000]);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried_and_quote_the_body() {
        let transport = ScriptedTransport::new(vec![Ok(answer(404, None, "channel_not_found"))]);
        let delivery = Delivery::new("slack", transport.clone(), RetryPolicy::default(), None);
        let err = delivery.send(&request()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "slack rejected the notification: HTTP 404: channel_not_found"
        );
        assert_eq!(transport.times().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pushes_back_this_and_the_next_messages() {
        let transport = ScriptedTransport::new(vec![
            Ok(answer(429, Some(7), "")),
            Ok(answer(200, None, "")),
        ]);
        let delivery = Delivery::new(
            "slack",
            transport.clone(),
            RetryPolicy::default(),
            Some(Duration::from_secs(1)),
        );
        let start = Instant::now();
        delivery.send(&request()).await.unwrap();
        delivery.send(&request()).await.unwrap();
        delivery.send(&request()).await.unwrap();
        // 0: 429 (wait 7 s); 7 s: retry ok; then one message a second.
        assert_eq!(
            offsets(start, &transport.times()),
            vec![0, 7000, 8000, 9000]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_budget_gives_up_at_once() {
        let transport = ScriptedTransport::new(vec![Ok(answer(429, Some(3600), ""))]);
        let delivery = Delivery::new("slack", transport.clone(), RetryPolicy::default(), None);
        let start = Instant::now();
        assert!(delivery.send(&request()).await.is_err());
        assert_eq!(Instant::now(), start);
        assert_eq!(transport.times().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_time_is_bounded_even_when_the_receiver_hangs() {
        #[derive(Debug)]
        struct Hang;
        #[async_trait]
        impl Transport for Hang {
            async fn post(&self, _: &Outgoing) -> Result<Answer, TransportError> {
                std::future::pending().await
            }
        }
        let policy = RetryPolicy {
            attempts: 10,
            ..RetryPolicy::default()
        };
        let delivery = Delivery::new("webhook", Arc::new(Hang), policy, None);
        let start = Instant::now();
        let err = delivery.send(&request()).await.unwrap_err();
        assert!(Instant::now() - start <= policy.total);
        assert!(format!("{:?}", err).contains("timed out"));
    }

    #[test]
    fn redacts_everything_but_scheme_and_host() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/x?token=a"),
            "http://127.0.0.1:9/…"
        );
        assert_eq!(redact_url("nonsense"), "<invalid url>");
    }
}
