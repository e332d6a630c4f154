//! Secrets preflight: before anything changes, every Secrets Manager secret a new task
//! definition references must exist, be readable by the caller and not be scheduled for
//! deletion. The version id found is recorded (and pinned in the new task definition) so a
//! rollback uses the same version.
//!
//! Values are never kept: `GetSecretValue` is asked only to prove the secret can be
//! decrypted, and its answer is dropped at once. The SDK redacts secret fields from `Debug`
//! output as well, and nothing here formats an answer.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::aws::{Clients, RetryPolicy, call};
use super::taskdef::secret_ref;

/// A secret checked and found usable, with the version the release deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SecretVersion {
    /// The secret's full ARN.
    pub arn: String,
    pub name: String,
    /// The version the release uses (`AWSCURRENT` now, or the one the reference pins).
    pub version_id: String,
}

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum SecretProblem {
    Missing,
    ScheduledForDeletion {
        deleted_date: String,
    },
    NotReadable {
        code: String,
    },
    NoCurrentVersion,
    /// The reference pins a version that the secret does not have.
    UnknownVersion {
        version: String,
    },
    CouldNotCheck {
        message: String,
    },
}

/// One secret that failed the preflight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretIssue {
    /// The reference as written (ARN, possibly with a version).
    pub reference: String,
    pub problem: SecretProblem,
}

impl fmt::Display for SecretIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.reference;
        match &self.problem {
            SecretProblem::Missing => write!(
                f,
                "secret {r} does not exist (or is in another account/region): create it, or fix the ARN in the release"
            ),
            SecretProblem::ScheduledForDeletion { deleted_date } => write!(
                f,
                "secret {r} is scheduled for deletion on {deleted_date}: restore it (`aws secretsmanager restore-secret`) or use another"
            ),
            SecretProblem::NotReadable { code } => write!(
                f,
                "secret {r} cannot be read by this identity ({code}): grant secretsmanager:GetSecretValue and kms:Decrypt on its key"
            ),
            SecretProblem::NoCurrentVersion => write!(
                f,
                "secret {r} has no AWSCURRENT version: put a value in it first"
            ),
            SecretProblem::UnknownVersion { version } => write!(
                f,
                "secret {r} has no version {version}: fix the version in the task definition or the release"
            ),
            SecretProblem::CouldNotCheck { message } => {
                write!(f, "secret {r} could not be checked: {message}")
            }
        }
    }
}

/// Check each Secrets Manager reference (SSM parameters and other values are skipped: the
/// caller reports them). Returns the versions found, or every problem.
pub async fn preflight(
    clients: &Clients,
    retry: &RetryPolicy,
    references: &[String],
) -> Result<Vec<SecretVersion>, Vec<SecretIssue>> {
    let mut seen = BTreeMap::new();
    let mut issues = Vec::new();
    for reference in references {
        let Some(r) = secret_ref(reference) else {
            continue;
        };
        let key = (r.arn.clone(), r.version_id.clone(), r.version_stage.clone());
        if seen.contains_key(&key) {
            continue;
        }
        match check_one(
            clients,
            retry,
            &r.arn,
            r.version_id.as_deref(),
            r.version_stage.as_deref(),
        )
        .await
        {
            Ok(v) => {
                tracing::info!(secret = %v.arn, version = %v.version_id, "secret checked");
                seen.insert(key, v);
            }
            Err(problem) => issues.push(SecretIssue {
                reference: reference.clone(),
                problem,
            }),
        }
    }
    if issues.is_empty() {
        Ok(seen.into_values().collect())
    } else {
        Err(issues)
    }
}

async fn check_one(
    clients: &Clients,
    retry: &RetryPolicy,
    arn: &str,
    version_id: Option<&str>,
    version_stage: Option<&str>,
) -> Result<SecretVersion, SecretProblem> {
    let sm = &clients.secrets;
    let described = call(retry, "secretsmanager:DescribeSecret", || {
        sm.describe_secret().secret_id(arn).send()
    })
    .await
    .map_err(|e| {
        if e.is_not_found() {
            SecretProblem::Missing
        } else if e.is_access_denied() {
            SecretProblem::NotReadable {
                code: e.code.clone().unwrap_or_default(),
            }
        } else {
            SecretProblem::CouldNotCheck {
                message: e.to_string(),
            }
        }
    })?;
    if let Some(d) = described.deleted_date() {
        return Err(SecretProblem::ScheduledForDeletion {
            deleted_date: d.to_string(),
        });
    }
    let versions = described.version_ids_to_stages();
    let stage = version_stage.unwrap_or("AWSCURRENT");
    let chosen = match version_id {
        Some(v) => {
            if versions.is_some_and(|m| !m.contains_key(v)) {
                return Err(SecretProblem::UnknownVersion {
                    version: v.to_string(),
                });
            }
            v.to_string()
        }
        None => versions
            .and_then(|m| {
                m.iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == stage))
                    .map(|(id, _)| id.clone())
            })
            .ok_or(SecretProblem::NoCurrentVersion)?,
    };
    // Prove the caller can decrypt this version; the answer (with the value) is dropped
    // here without being looked at.
    let read = call(retry, "secretsmanager:GetSecretValue", || {
        sm.get_secret_value()
            .secret_id(arn)
            .version_id(&chosen)
            .send()
    })
    .await;
    match read {
        Ok(answer) => drop(answer),
        Err(e) if e.is_not_found() => return Err(SecretProblem::NoCurrentVersion),
        Err(e) if e.code.is_some() && !e.retryable => {
            return Err(SecretProblem::NotReadable {
                code: e.code.unwrap_or_default(),
            });
        }
        Err(e) => {
            return Err(SecretProblem::CouldNotCheck {
                message: e.to_string(),
            });
        }
    }
    Ok(SecretVersion {
        arn: described.arn().unwrap_or(arn).to_string(),
        name: described.name().unwrap_or("").to_string(),
        version_id: chosen,
    })
}
