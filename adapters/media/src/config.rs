//! What bootstrap configures, and the one constructor it calls.

use crate::cdn::CdnMediaUrls;
use crate::s3::{S3PresignedMediaUrls, S3UrlStyle};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use vrs_application::ports::{Clock, MediaUrls};

/// A media configuration error, naming the offending variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct MediaConfigError {
    /// The environment variable at fault, e.g. `S3_BUCKET`.
    pub var: &'static str,
    /// What is wrong with it; never contains a secret.
    pub message: String,
}

impl MediaConfigError {
    /// An error about `var`.
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// Which media URL adapter to run.
#[derive(Clone, Debug)]
pub enum MediaConfig {
    /// Public URLs under a CDN origin.
    Cdn {
        /// `CDN_BASE_URL`.
        base_url: String,
    },
    /// Presigned GET URLs of an S3-compatible bucket.
    S3(S3Config),
}

/// Settings of S3 presigned media URLs, one field per environment variable.
#[derive(Clone)]
pub struct S3Config {
    /// `S3_ENDPOINT`; `None` for AWS itself (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    /// `S3_REGION`, part of every signature's scope.
    pub region: String,
    /// `S3_BUCKET`.
    pub bucket: String,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`; never printed.
    pub secret_access_key: String,
    /// `S3_PRESIGN_TTL_SECS`: how long a URL stays valid, whole seconds from 1 to [`Self::MAX_TTL`].
    pub ttl: Duration,
}

impl S3Config {
    /// The TTL when `S3_PRESIGN_TTL_SECS` is unset.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(900);
    /// The longest TTL SigV4 allows: 7 days.
    pub const MAX_TTL: Duration = Duration::from_secs(604_800);

    /// `S3_ENDPOINT`, or AWS's regional endpoint when it is unset.
    pub fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim().to_owned(),
            None => format!("https://s3.{}.amazonaws.com", self.region.trim()),
        }
    }

    /// Virtual-hosted on AWS endpoints (the style AWS recommends), path-style elsewhere (MinIO and
    /// most S3-compatible servers), and path-style for AWS bucket names with a dot, which AWS's
    /// wildcard TLS certificates do not cover.
    pub fn url_style(&self) -> S3UrlStyle {
        let on_aws = match &self.endpoint {
            None => true,
            Some(endpoint) => Url::parse(endpoint.trim())
                .ok()
                .and_then(|url| url.host_str().map(is_aws_host))
                .unwrap_or(false),
        };
        if on_aws && !self.bucket.contains('.') {
            S3UrlStyle::VirtualHosted
        } else {
            S3UrlStyle::Path
        }
    }
}

fn is_aws_host(host: &str) -> bool {
    ["amazonaws.com", "amazonaws.com.cn"].iter().any(|domain| {
        host.strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
    })
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Builds the configured adapter; S3 URLs are signed at `clock`'s time.
pub fn media_urls(
    config: &MediaConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn MediaUrls>, MediaConfigError> {
    Ok(match config {
        MediaConfig::Cdn { base_url } => Arc::new(CdnMediaUrls::new(base_url)?),
        MediaConfig::S3(s3) => Arc::new(S3PresignedMediaUrls::new(s3, clock)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: Option<&str>, bucket: &str) -> S3Config {
        S3Config {
            endpoint: endpoint.map(str::to_owned),
            region: "eu-west-1".into(),
            bucket: bucket.into(),
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            ttl: S3Config::DEFAULT_TTL,
        }
    }

    #[test]
    fn defaults_to_the_regional_aws_endpoint() {
        assert_eq!(
            s3(None, "media").endpoint_url(),
            "https://s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            s3(Some(" http://minio:9000 "), "media").endpoint_url(),
            "http://minio:9000"
        );
    }

    #[test]
    fn picks_virtual_hosted_style_only_on_aws() {
        use S3UrlStyle::{Path, VirtualHosted};
        for (endpoint, bucket, style) in [
            (None, "media", VirtualHosted),
            (None, "media.example.com", Path),
            (Some("https://s3.amazonaws.com"), "media", VirtualHosted),
            (
                Some("https://s3.dualstack.eu-west-1.amazonaws.com"),
                "media",
                VirtualHosted,
            ),
            (
                Some("https://s3.cn-north-1.amazonaws.com.cn"),
                "media",
                VirtualHosted,
            ),
            (Some("http://minio:9000"), "media", Path),
            (Some("http://127.0.0.1:9000"), "media", Path),
            (Some("https://notamazonaws.com"), "media", Path),
            (Some("not a url"), "media", Path),
        ] {
            assert_eq!(
                s3(endpoint, bucket).url_style(),
                style,
                "{endpoint:?} {bucket}"
            );
        }
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let printed = format!("{:?}", MediaConfig::S3(s3(None, "media")));
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("AKID"));
    }

    #[test]
    fn errors_name_the_variable() {
        let err = MediaConfigError::new("S3_BUCKET", "required");
        assert_eq!(err.to_string(), "S3_BUCKET: required");
    }
}
