//! Media URL adapters: the [`MediaUrls`](vrs_application::ports::MediaUrls) port as public CDN
//! URLs or as S3-compatible presigned GET URLs.
//!
//! No I/O: URLs are built, and signed, in memory on the request path, once per video.
//!
//! Both adapters turn an object key into a URL path the same way (see [`CdnMediaUrls`]): each
//! segment percent-encoded, and empty, `.` and `..` segments dropped. A key with no segment left
//! has no URL; the empty string is returned rather than the URL of the origin or of the bucket.

mod cdn;
mod config;
mod key;
mod s3;

pub use cdn::CdnMediaUrls;
pub use config::{MediaConfig, MediaConfigError, S3Config, media_urls};
pub use s3::{S3PresignedMediaUrls, S3UrlStyle};
