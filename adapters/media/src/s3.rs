//! Presigned GET URLs of an S3-compatible bucket (AWS Signature Version 4, query-string auth).
//!
//! Signing is a handful of HMAC-SHA256 over short strings, in memory: no I/O, and cheap enough to
//! run per video on the request path.

use crate::cdn::check_http_url;
use crate::config::{MediaConfigError, S3Config};
use crate::key;
use chrono::{DateTime, Utc};
use jiff::Timestamp;
use rusty_s3::actions::{GetObject, S3Action};
use rusty_s3::{Bucket, BucketError, Credentials, UrlStyle};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use vrs_application::ports::{Clock, MediaUrls};
use vrs_domain::Video;

/// How a bucket is addressed in object URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3UrlStyle {
    /// `<scheme>://<bucket>.<endpoint host>/<key>`, AWS's recommended style.
    VirtualHosted,
    /// `<endpoint>/<bucket>/<key>`, what MinIO and most S3-compatible servers expect.
    Path,
}

/// Presigned S3 GET URLs, signed at the injected clock's time and valid for the configured TTL.
pub struct S3PresignedMediaUrls {
    bucket: Bucket,
    credentials: Credentials,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl S3PresignedMediaUrls {
    /// Validates `config` and addresses the bucket in [`S3Config::url_style`].
    pub fn new(config: &S3Config, clock: Arc<dyn Clock>) -> Result<Self, MediaConfigError> {
        Self::with_url_style(config, config.url_style(), clock)
    }

    /// Like [`Self::new`], with an explicit addressing style.
    pub fn with_url_style(
        config: &S3Config,
        style: S3UrlStyle,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, MediaConfigError> {
        let region = config.region.trim();
        check_token("S3_REGION", region, "letters, digits, '-' and '_'", |c| {
            matches!(c, '-' | '_')
        })?;
        let bucket_name = config.bucket.trim();
        check_token(
            "S3_BUCKET",
            bucket_name,
            "letters, digits, '-', '_' and '.'",
            |c| matches!(c, '-' | '_' | '.'),
        )?;
        let access_key_id = config.access_key_id.trim();
        check_token(
            "AWS_ACCESS_KEY_ID",
            access_key_id,
            "letters and digits",
            |_| false,
        )?;
        if config.secret_access_key.is_empty() {
            return Err(required("AWS_SECRET_ACCESS_KEY"));
        }
        if !(Duration::from_secs(1)..=S3Config::MAX_TTL).contains(&config.ttl) {
            return Err(MediaConfigError::new(
                "S3_PRESIGN_TTL_SECS",
                "must be from 1 to 604800 seconds (7 days, the SigV4 maximum)",
            ));
        }

        let endpoint_var = if config.endpoint.is_some() {
            "S3_ENDPOINT"
        } else {
            "S3_REGION"
        };
        let endpoint = Url::parse(&config.endpoint_url()).map_err(|e| {
            MediaConfigError::new(endpoint_var, format!("not an absolute URL: {e}"))
        })?;
        check_http_url(&endpoint, endpoint_var)?;

        let url_style = match style {
            S3UrlStyle::VirtualHosted => UrlStyle::VirtualHost,
            S3UrlStyle::Path => UrlStyle::Path,
        };
        let bucket = Bucket::new(
            endpoint,
            url_style,
            bucket_name.to_owned(),
            region.to_owned(),
        )
        .map_err(|e| match e {
            BucketError::ParseError(_) => MediaConfigError::new(
                "S3_BUCKET",
                "cannot be part of a host name (virtual-hosted style); use a lowercase name \
                     without dots, or an endpoint addressed path-style",
            ),
            other => MediaConfigError::new(endpoint_var, other.to_string()),
        })?;
        Ok(Self {
            bucket,
            credentials: Credentials::new(access_key_id, config.secret_access_key.clone()),
            ttl: Duration::from_secs(config.ttl.as_secs()),
            clock,
        })
    }

    /// The presigned URL of `key`, signed now; empty when the key has no segment (see the crate
    /// docs).
    pub fn url(&self, key: &str) -> String {
        self.url_at(key, self.clock.now())
    }

    /// The presigned URL of `key`, signed at `at` and valid until `at` + TTL.
    pub fn url_at(&self, key: &str, at: DateTime<Utc>) -> String {
        let key = key::normalized(key);
        // An empty key would presign the bucket itself: a ListObjects URL.
        if key.is_empty() {
            return String::new();
        }
        GetObject::new(&self.bucket, Some(&self.credentials), &key)
            .sign_with_time(self.ttl, &timestamp(at))
            .into()
    }

    fn url_of(&self, video: &Video, key: &str) -> String {
        let url = self.url(key);
        if url.is_empty() {
            tracing::warn!(video_id = %video.id, "media key has no path segment; no URL given");
        }
        url
    }
}

impl MediaUrls for S3PresignedMediaUrls {
    fn playback_url(&self, video: &Video) -> String {
        self.url_of(video, &video.media_key)
    }

    fn thumbnail_url(&self, video: &Video) -> String {
        self.url_of(video, &video.thumbnail_key)
    }
}

impl fmt::Debug for S3PresignedMediaUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Credentials` prints the access key id only.
        f.debug_struct("S3PresignedMediaUrls")
            .field("bucket", &self.bucket)
            .field("credentials", &self.credentials)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn required(var: &'static str) -> MediaConfigError {
    MediaConfigError::new(var, "required for S3 presigned media URLs")
}

/// A value that goes into a host name or the signature's credential scope, where `/`, spaces and
/// the like would break the URL or the scope.
fn check_token(
    var: &'static str,
    value: &str,
    allowed: &str,
    also_allowed: impl Fn(char) -> bool,
) -> Result<(), MediaConfigError> {
    if value.is_empty() {
        return Err(required(var));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || also_allowed(c))
    {
        return Err(MediaConfigError::new(
            var,
            format!("may hold only {allowed}"),
        ));
    }
    Ok(())
}

/// SigV4 dates have whole seconds; a clock outside jiff's range (years -9999 to 9999) is clamped.
fn timestamp(at: DateTime<Utc>) -> Timestamp {
    let seconds = at.timestamp();
    Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}
