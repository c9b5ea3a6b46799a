//! The media URL adapters through their public API: what every adapter of the port must do, then
//! the S3 signatures against published and independently generated SigV4 vectors.

use chrono::{DateTime, TimeZone, Utc};
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use uuid::Uuid;
use vrs_adapter_media::{
    CdnMediaUrls, MediaConfig, MediaConfigError, S3Config, S3PresignedMediaUrls, S3UrlStyle,
    media_urls,
};
use vrs_adapter_memory::ManualClock;
use vrs_application::ports::{Clock, MediaUrls};
use vrs_domain::{CreatorId, Video, VideoId, VideoStatus};

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn clock(now: DateTime<Utc>) -> Arc<ManualClock> {
    Arc::new(ManualClock::new(now))
}

fn video(media_key: &str, thumbnail_key: &str) -> Video {
    let now = at(2024, 1, 1, 0, 0, 0);
    Video {
        id: VideoId(Uuid::new_v4()),
        creator_id: CreatorId(Uuid::new_v4()),
        title: "clip".into(),
        duration_seconds: 30,
        status: VideoStatus::Published,
        visibility: vrs_domain::Visibility::Public,
        media_key: media_key.into(),
        thumbnail_key: thumbnail_key.into(),
        published_at: Some(now),
        updated_at: now,
        deleted_at: None,
    }
}

fn s3_config(endpoint: Option<&str>, region: &str, bucket: &str, ttl_secs: u64) -> S3Config {
    S3Config {
        endpoint: endpoint.map(str::to_owned),
        region: region.into(),
        bucket: bucket.into(),
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        ttl: Duration::from_secs(ttl_secs),
    }
}

fn minio(now: DateTime<Utc>) -> Arc<dyn MediaUrls> {
    let config = s3_config(Some("http://minio.local:9000"), "eu-west-1", "media", 900);
    media_urls(&MediaConfig::S3(config), clock(now)).expect("valid MinIO config")
}

fn query(url: &Url, name: &str) -> String {
    let found = url.query_pairs().find(|(k, _)| k == name);
    found.map(|(_, v)| v.into_owned()).unwrap_or_default()
}

// --- The port's contract, run unchanged against each adapter -----------------------------------

/// What any media URL adapter must do with object keys; `root` is the URL prefix of the objects.
fn media_urls_contract(media: &dyn MediaUrls, root: &str) {
    let url = media.playback_url(&video("videos/my clip/caf\u{e9} #1.mp4", "t.jpg"));
    assert!(
        url.starts_with(&format!("{root}/videos/my%20clip/caf%C3%A9%20%231.mp4")),
        "each segment percent-encoded: {url}"
    );

    let url = media.thumbnail_url(&video("m.mp4", "/thumbs//a.jpg"));
    assert!(url.starts_with(&format!("{root}/thumbs/a.jpg")), "{url}");
    let after_scheme = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(!after_scheme.contains("//"), "no double slash: {url}");

    let url = media.playback_url(&video("../../other/secret.mp4", "t.jpg"));
    assert!(
        url.starts_with(&format!("{root}/other/secret.mp4")),
        "dot segments dropped: {url}"
    );

    assert_eq!(
        media.playback_url(&video("/./", "t.jpg")),
        "",
        "no URL for a key without segments"
    );

    let url = media.playback_url(&video("a b/\u{1F3AC}.mp4", "t.jpg"));
    let parsed = Url::parse(&url).expect("an absolute URL");
    let root_path = Url::parse(root).expect("an absolute root");
    assert_eq!(
        parsed.path(),
        format!(
            "{}/a%20b/%F0%9F%8E%AC.mp4",
            root_path.path().trim_end_matches('/')
        )
    );
}

#[test]
fn cdn_adapter_passes_the_contract() {
    let config = MediaConfig::Cdn {
        base_url: "https://cdn.example.com/media/".into(),
    };
    let media = media_urls(&config, clock(Utc::now())).unwrap();
    media_urls_contract(media.as_ref(), "https://cdn.example.com/media");
}

#[test]
fn s3_adapters_pass_the_contract() {
    media_urls_contract(minio(Utc::now()).as_ref(), "http://minio.local:9000/media");
    let aws = s3_config(None, "eu-west-1", "media", 900);
    let media = media_urls(&MediaConfig::S3(aws), clock(Utc::now())).unwrap();
    media_urls_contract(media.as_ref(), "https://media.s3.eu-west-1.amazonaws.com");
}

// --- SigV4 vectors --------------------------------------------------------------------------------

/// The presigned GET of the AWS S3 API reference, "Authenticating Requests: Using Query
/// Parameters (AWS Signature Version 4)".
const AWS_EXAMPLE_URL: &str = "https://examplebucket.s3.amazonaws.com/test.txt\
    ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
    &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn reproduces_the_aws_documentation_vector_through_the_config() {
    let config = s3_config(
        Some("https://s3.amazonaws.com"),
        "us-east-1",
        "examplebucket",
        86_400,
    );
    assert_eq!(config.url_style(), S3UrlStyle::VirtualHosted);
    let media = media_urls(&MediaConfig::S3(config), clock(at(2013, 5, 24, 0, 0, 0))).unwrap();
    assert_eq!(
        media.playback_url(&video("test.txt", "t.jpg")),
        AWS_EXAMPLE_URL
    );
}

#[test]
fn reproduces_the_aws_documentation_vector_with_an_explicit_style() {
    let config = s3_config(
        Some("https://s3.amazonaws.com"),
        "us-east-1",
        "examplebucket",
        86_400,
    );
    let media =
        S3PresignedMediaUrls::with_url_style(&config, S3UrlStyle::VirtualHosted, clock(Utc::now()))
            .unwrap();
    assert_eq!(
        media.url_at("test.txt", at(2013, 5, 24, 0, 0, 0)),
        AWS_EXAMPLE_URL
    );
}

// Generated with botocore 1.43 (`generate_presigned_url`, s3v4, the time fixed), which also
// reproduces the AWS vector above: an implementation independent of rusty-s3.
#[test]
fn matches_botocore_for_path_style_keys_with_spaces_and_unicode() {
    let media = minio(at(2024, 1, 2, 3, 4, 5));
    assert_eq!(
        media.playback_url(&video("videos/my clip/caf\u{e9} #1.mp4", "t.jpg")),
        "http://minio.local:9000/media/videos/my%20clip/caf%C3%A9%20%231.mp4\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=b34b0f13720577cebc6566946192c3a3e44fa0d80ed30d0316b4854da541c019"
    );
    assert_eq!(
        media.thumbnail_url(&video("m.mp4", "thumbs/\u{1F3AC}+a&b=c.jpg")),
        "http://minio.local:9000/media/thumbs/%F0%9F%8E%AC%2Ba%26b%3Dc.jpg\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=1a2d15c9bace2bf494eb3f0de7d28b8f22ced06485f04eba6186bf0f2278ca3b"
    );
}

#[test]
fn matches_botocore_for_the_default_regional_aws_endpoint() {
    let config = s3_config(None, "eu-west-1", "media", 3600);
    let media = media_urls(&MediaConfig::S3(config), clock(at(2024, 1, 2, 3, 4, 5))).unwrap();
    assert_eq!(
        media.playback_url(&video("videos/a b/master.m3u8", "t.jpg")),
        "https://media.s3.eu-west-1.amazonaws.com/videos/a%20b/master.m3u8\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240102%2Feu-west-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=042b5ee6547813c93084fb863c416d7765007ef2358a0d9af3056a0279c931c4"
    );
}

#[test]
fn path_style_urls_have_the_presigned_get_structure() {
    let url = minio(at(2024, 1, 2, 3, 4, 5)).playback_url(&video("videos/v1/master.m3u8", "t"));
    let url = Url::parse(&url).unwrap();
    assert_eq!(url.scheme(), "http");
    assert_eq!(url.host_str(), Some("minio.local"));
    assert_eq!(url.port(), Some(9000));
    assert_eq!(url.path(), "/media/videos/v1/master.m3u8");
    assert_eq!(query(&url, "X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    assert_eq!(
        query(&url, "X-Amz-Credential"),
        "AKIAIOSFODNN7EXAMPLE/20240102/eu-west-1/s3/aws4_request"
    );
    assert_eq!(query(&url, "X-Amz-Date"), "20240102T030405Z");
    assert_eq!(query(&url, "X-Amz-Expires"), "900");
    assert_eq!(query(&url, "X-Amz-SignedHeaders"), "host");
    let signature = query(&url, "X-Amz-Signature");
    assert!(
        signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()),
        "{signature}"
    );
}

#[test]
fn an_endpoint_path_prefix_is_kept_before_the_bucket() {
    let config = s3_config(Some("https://gateway.example/s3/"), "garage", "media", 900);
    let media = S3PresignedMediaUrls::new(&config, clock(Utc::now())).unwrap();
    let url = Url::parse(&media.url("a/b.jpg")).unwrap();
    assert_eq!(url.host_str(), Some("gateway.example"));
    assert_eq!(url.path(), "/s3/media/a/b.jpg");
    assert!(query(&url, "X-Amz-Credential").contains("/garage/s3/aws4_request"));
}

#[test]
fn the_url_follows_the_clock() {
    let now = at(2024, 1, 2, 23, 59, 59);
    let clock = clock(now);
    let config = s3_config(Some("http://minio.local:9000"), "eu-west-1", "media", 900);
    let media = S3PresignedMediaUrls::new(&config, clock.clone()).unwrap();

    let first = Url::parse(&media.url("v.mp4")).unwrap();
    assert_eq!(media.url("v.mp4"), first.as_str(), "same second, same URL");

    clock.advance(chrono::Duration::seconds(1));
    let next = Url::parse(&media.url("v.mp4")).unwrap();
    assert_ne!(
        query(&first, "X-Amz-Signature"),
        query(&next, "X-Amz-Signature")
    );
    assert_eq!(query(&first, "X-Amz-Date"), "20240102T235959Z");
    assert_eq!(query(&next, "X-Amz-Date"), "20240103T000000Z");
    assert!(query(&next, "X-Amz-Credential").contains("/20240103/eu-west-1/"));
    assert_eq!(media.url_at("v.mp4", clock.now()), next.as_str());
}

#[test]
fn never_presigns_the_bucket_itself_or_another_bucket() {
    let media = minio(at(2024, 1, 2, 3, 4, 5));
    for key in ["", "/", "./..", "//./"] {
        assert_eq!(media.playback_url(&video(key, "t")), "", "{key:?}");
    }
    let url = Url::parse(&media.playback_url(&video("../private/x.mp4", "t"))).unwrap();
    assert_eq!(url.path(), "/media/private/x.mp4");
}

// --- Configuration errors ---------------------------------------------------------------------

/// Makes one field of a valid config invalid.
type Breakage = fn(&mut S3Config);

fn s3_error(config: &S3Config) -> MediaConfigError {
    let err = media_urls(&MediaConfig::S3(config.clone()), clock(Utc::now()))
        .err()
        .expect("an invalid config");
    assert!(!err.to_string().contains(SECRET_KEY), "{err}");
    err
}

#[test]
fn every_s3_error_names_its_variable() {
    let ok = s3_config(Some("http://minio.local:9000"), "eu-west-1", "media", 900);
    let cases: [(&str, Breakage); 12] = [
        ("S3_REGION", |c| c.region.clear()),
        ("S3_REGION", |c| c.region = "eu/west".into()),
        ("S3_BUCKET", |c| c.bucket = " ".into()),
        ("S3_BUCKET", |c| c.bucket = "media/videos".into()),
        ("AWS_ACCESS_KEY_ID", |c| c.access_key_id.clear()),
        ("AWS_ACCESS_KEY_ID", |c| c.access_key_id = "AK/ID".into()),
        ("AWS_SECRET_ACCESS_KEY", |c| c.secret_access_key.clear()),
        ("S3_PRESIGN_TTL_SECS", |c| c.ttl = Duration::ZERO),
        ("S3_PRESIGN_TTL_SECS", |c| {
            c.ttl = Duration::from_secs(604_801)
        }),
        ("S3_ENDPOINT", |c| {
            c.endpoint = Some("ftp://minio.local".into())
        }),
        ("S3_ENDPOINT", |c| {
            c.endpoint = Some("minio.local:9000".into())
        }),
        ("S3_ENDPOINT", |c| {
            c.endpoint = Some("http://key:secret@minio.local".into())
        }),
    ];
    for (var, break_it) in cases {
        let mut config = ok.clone();
        break_it(&mut config);
        let err = s3_error(&config);
        assert_eq!(err.var, var, "{err}");
        assert!(err.to_string().starts_with(&format!("{var}: ")), "{err}");
    }
    assert_eq!(
        s3_error(&s3_config(None, "eu-west-1", "", 900)).to_string(),
        "S3_BUCKET: required for S3 presigned media URLs"
    );
}

#[test]
fn a_bucket_that_cannot_be_a_host_label_is_refused_virtual_hosted_only() {
    let mut config = s3_config(None, "us-east-1", "Legacy_Bucket", 900);
    assert_eq!(s3_error(&config).var, "S3_BUCKET");
    config.endpoint = Some("http://minio.local:9000".into());
    assert!(S3PresignedMediaUrls::new(&config, clock(Utc::now())).is_ok());
}

#[test]
fn accepts_the_sigv4_maximum_ttl() {
    let config = s3_config(None, "eu-west-1", "media", 604_800);
    let media = S3PresignedMediaUrls::new(&config, clock(Utc::now())).unwrap();
    let url = Url::parse(&media.url("v.mp4")).unwrap();
    assert_eq!(query(&url, "X-Amz-Expires"), "604800");
    assert_eq!(S3Config::MAX_TTL, Duration::from_secs(604_800));
    assert_eq!(S3Config::DEFAULT_TTL, Duration::from_secs(900));
}

#[test]
fn a_bad_cdn_base_url_names_cdn_base_url() {
    let config = MediaConfig::Cdn {
        base_url: "s3://media".into(),
    };
    let err = media_urls(&config, clock(Utc::now())).err().unwrap();
    assert_eq!(err.var, "CDN_BASE_URL");
    assert!(CdnMediaUrls::new("https://cdn.example.com").is_ok());
}

#[test]
fn the_adapter_never_prints_the_secret() {
    let config = s3_config(None, "eu-west-1", "media", 900);
    let media = S3PresignedMediaUrls::new(&config, clock(Utc::now())).unwrap();
    let printed = format!("{media:?}");
    assert!(!printed.contains(SECRET_KEY), "{printed}");
    assert!(printed.contains("media"), "{printed}");
}
