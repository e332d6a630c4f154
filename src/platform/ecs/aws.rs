//! The AWS side shared by every ECS module: how a configuration is loaded (standard
//! credential chain, profiles, region, `AWS_ENDPOINT_URL`) with one rustls-on-ring HTTP
//! client, the four service clients, and cutover's own retry with backoff around each call.
//!
//! The SDK's built-in retries are switched off so that one policy, visible in the logs and
//! tested against a fault-injecting proxy, decides what is retried: throttling, HTTP 5xx,
//! and requests that never got an answer.

use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::{Builder, tls};
use rand::Rng;

/// Load the AWS configuration the way the AWS CLI does: `AWS_PROFILE` and the shared
/// config/credentials files (SSO and `credential_process` included), environment
/// variables, container and instance roles; `AWS_REGION`/the profile's region unless
/// `region` is given; `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`) when set.
/// `profile` picks a named profile as `AWS_PROFILE` would.
pub async fn load_config(region: Option<&str>, profile: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::disabled());
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

/// The one HTTP client: hyper 1 with rustls on the ring provider. The SDK crates are built
/// without their default HTTP client, so every configuration must carry this one.
pub fn https_client() -> aws_sdk_ecs::config::SharedHttpClient {
    Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The four clients one ECS service needs, all for one region.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// Clients for `conf`, in `region` when given (else the configuration's region). The
    /// SDK's own retries are off: [`call`] retries.
    pub fn new(conf: &SdkConfig, region: Option<&str>) -> Clients {
        let region = region.map(|r| Region::new(r.to_string()));
        macro_rules! client {
            ($krate:ident) => {{
                let mut b =
                    $krate::config::Builder::from(conf).retry_config(RetryConfig::disabled());
                if let Some(r) = &region {
                    b = b.region(r.clone());
                }
                $krate::Client::from_conf(b.build())
            }};
        }
        Clients {
            ecs: client!(aws_sdk_ecs),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            cloudwatch: client!(aws_sdk_cloudwatch),
            secrets: client!(aws_sdk_secretsmanager),
        }
    }

    /// The region these clients talk to, for messages.
    pub fn region(&self) -> String {
        self.ecs
            .config()
            .region()
            .map_or_else(|| "(no region)".to_string(), |r| r.to_string())
    }
}

/// How often and how patiently a failed call is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles each time (with full jitter).
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (1-based `attempt` just failed).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        // Full jitter, but never below a quarter, so a burst of throttled callers spreads
        // out without any of them hammering the API again at once.
        let lo = cap / 4;
        if cap <= lo {
            return cap;
        }
        let nanos = rand::rng().random_range(lo.as_nanos() as u64..=cap.as_nanos() as u64);
        Duration::from_nanos(nanos)
    }
}

/// A failed AWS call after retries, with what is needed to decide what to do next.
/// Messages come from AWS error metadata and never contain secret values.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed after {attempts} attempt(s): {message}")]
pub struct AwsError {
    /// The API operation, `elbv2:ModifyRule`.
    pub operation: String,
    /// The AWS error code (`ThrottlingException`, `ResourceNotFoundException`), if any.
    pub code: Option<String>,
    /// HTTP status of the last answer, if there was one.
    pub status: Option<u16>,
    pub message: String,
    /// Whether the last failure was of a kind worth retrying later.
    pub retryable: bool,
    pub attempts: u32,
}

impl AwsError {
    /// True when AWS said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            c.contains("NotFound")
                || c == "ServiceNotFoundException"
                || c == "ClusterNotFoundException"
                || c == "TaskSetNotFoundException"
        })
    }
    /// True when the caller lacks permission.
    pub fn is_access_denied(&self) -> bool {
        self.code.as_deref().is_some_and(|c| {
            c.contains("AccessDenied") || c == "UnauthorizedOperation" || c == "AuthFailure"
        })
    }
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

const TRANSIENT_CODES: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServerException",
];

/// Turn an SDK error into an [`AwsError`], deciding whether it is worth retrying.
pub fn classify<E>(operation: &str, err: &SdkError<E>, attempts: u32) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    // Messages are built from error metadata only, never from a response body: the body
    // of an answer that failed to parse may be a secret value (GetSecretValue).
    let (code, message) = match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().map(str::to_string);
            let message = match (e.message(), &code, status) {
                (Some(m), _, _) => m.to_string(),
                (None, Some(c), _) => c.clone(),
                (None, None, Some(s)) => format!("HTTP {s} without an AWS error code"),
                (None, None, None) => "error without a code".to_string(),
            };
            (code, message)
        }
        SdkError::ResponseError(_) => (
            None,
            format!(
                "HTTP {} with an answer that could not be read",
                status.map_or_else(|| "?".to_string(), |s| s.to_string())
            ),
        ),
        SdkError::TimeoutError(_) => (None, "timed out".to_string()),
        SdkError::DispatchFailure(d) => (
            None,
            match d.as_connector_error() {
                Some(c) => format!("request not sent: {}", DisplayErrorContext(c)),
                None => "request not sent".to_string(),
            },
        ),
        SdkError::ConstructionFailure(_) => (None, DisplayErrorContext(err).to_string()),
        _ => (None, "unknown SDK error".to_string()),
    };
    let retryable = match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ConstructionFailure(_) => false,
        _ => {
            status.is_some_and(|s| s >= 500 || s == 429)
                || code
                    .as_deref()
                    .is_some_and(|c| THROTTLING_CODES.contains(&c) || TRANSIENT_CODES.contains(&c))
        }
    };
    AwsError {
        operation: operation.to_string(),
        code,
        status,
        message,
        retryable,
        attempts,
    }
}

/// Run one AWS call, retrying throttling, 5xx and unanswered requests with exponential
/// backoff and jitter, up to `policy.max_attempts` attempts.
pub async fn call<T, E, F, Fut>(
    policy: &RetryPolicy,
    operation: &str,
    mut f: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let max = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => {
                if attempt > 1 {
                    tracing::info!(operation, attempt, "AWS call succeeded after retrying");
                }
                return Ok(v);
            }
            Err(e) => {
                let err = classify(operation, &e, attempt);
                if !err.retryable || attempt >= max {
                    tracing::warn!(
                        operation,
                        attempt,
                        code = err.code.as_deref().unwrap_or(""),
                        status = err.status.unwrap_or(0),
                        "AWS call failed: {}",
                        err.message
                    );
                    return Err(err);
                }
                let delay = policy.delay(attempt);
                tracing::info!(
                    operation,
                    attempt,
                    code = err.code.as_deref().unwrap_or(""),
                    status = err.status.unwrap_or(0),
                    delay_ms = delay.as_millis() as u64,
                    "AWS call failed, retrying: {}",
                    err.message
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(25) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(100) && d3 <= Duration::from_millis(400));
            let d9 = p.delay(9);
            assert!(d9 >= Duration::from_millis(250) && d9 <= Duration::from_secs(1));
        }
        // Huge attempt numbers do not overflow.
        assert!(p.delay(u32::MAX) <= Duration::from_secs(1));
    }

    #[test]
    fn not_found_and_access_denied_are_recognised() {
        let e = |code: &str| AwsError {
            operation: "x".into(),
            code: Some(code.into()),
            status: Some(400),
            message: String::new(),
            retryable: false,
            attempts: 1,
        };
        assert!(e("ResourceNotFoundException").is_not_found());
        assert!(e("TargetGroupNotFound").is_not_found());
        assert!(e("ClusterNotFoundException").is_not_found());
        assert!(!e("ValidationError").is_not_found());
        assert!(e("AccessDeniedException").is_access_denied());
        assert!(!e("ThrottlingException").is_access_denied());
    }
}
