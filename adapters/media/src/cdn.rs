//! Public media URLs under a CDN origin.

use crate::config::MediaConfigError;
use crate::key;
use url::Url;
use vrs_application::ports::MediaUrls;
use vrs_domain::Video;

const VAR: &str = "CDN_BASE_URL";

/// Media URLs under a public base URL (`CDN_BASE_URL`): `<base>/<key>`, each key segment
/// percent-encoded, never a double slash.
#[derive(Clone, Debug)]
pub struct CdnMediaUrls {
    /// Normalized, without a trailing slash.
    base: String,
}

impl CdnMediaUrls {
    /// Validates `base_url`: an absolute http(s) URL with a host and no credentials, query or
    /// fragment. A path prefix (`https://cdn.example/media`) is kept.
    pub fn new(base_url: &str) -> Result<Self, MediaConfigError> {
        let mut url = Url::parse(base_url.trim())
            .map_err(|e| MediaConfigError::new(VAR, format!("not an absolute URL: {e}")))?;
        check_http_url(&url, VAR)?;
        // Empty segments in the prefix would give every media URL a double slash.
        let path: String = url
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .flat_map(|s| ["/", s])
            .collect();
        url.set_path(&path);
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
        })
    }

    /// The normalized base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL of one object key; empty when the key has no segment (see the crate docs).
    pub fn url(&self, key: &str) -> String {
        let mut url = String::with_capacity(self.base.len() + 1 + key.len() + key.len() / 2);
        url.push_str(&self.base);
        if key::push_encoded_path(&mut url, key) {
            url
        } else {
            String::new()
        }
    }

    fn url_of(&self, video: &Video, key: &str) -> String {
        let url = self.url(key);
        if url.is_empty() {
            tracing::warn!(video_id = %video.id, "media key has no path segment; no URL given");
        }
        url
    }
}

impl MediaUrls for CdnMediaUrls {
    fn playback_url(&self, video: &Video) -> String {
        self.url_of(video, &video.media_key)
    }

    fn thumbnail_url(&self, video: &Video) -> String {
        self.url_of(video, &video.thumbnail_key)
    }
}

/// The checks both adapters make on a configured base URL or endpoint.
pub(crate) fn check_http_url(url: &Url, var: &'static str) -> Result<(), MediaConfigError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(MediaConfigError::new(
            var,
            format!("scheme must be http or https, not {:?}", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(MediaConfigError::new(var, "has no host"));
    }
    // They would be copied into every URL handed to clients.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(MediaConfigError::new(var, "must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(MediaConfigError::new(
            var,
            "must not have a query or fragment",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdn(base: &str) -> CdnMediaUrls {
        CdnMediaUrls::new(base).unwrap()
    }

    #[test]
    fn joins_base_and_key_with_one_slash() {
        for base in ["https://cdn.example.com", "https://cdn.example.com/"] {
            for key in [
                "videos/1/master.m3u8",
                "/videos/1/master.m3u8",
                "videos//1/master.m3u8",
            ] {
                assert_eq!(
                    cdn(base).url(key),
                    "https://cdn.example.com/videos/1/master.m3u8"
                );
            }
        }
    }

    #[test]
    fn keeps_a_path_prefix_without_double_slashes() {
        let media = cdn("http://cdn.example.com:8080//media//v1/");
        assert_eq!(media.base_url(), "http://cdn.example.com:8080/media/v1");
        assert_eq!(
            media.url("a.jpg"),
            "http://cdn.example.com:8080/media/v1/a.jpg"
        );
    }

    #[test]
    fn encodes_spaces_and_unicode_per_segment() {
        assert_eq!(
            cdn("https://cdn.example.com").url("thumbs/my clip/\u{e9}t\u{e9} #1.jpg"),
            "https://cdn.example.com/thumbs/my%20clip/%C3%A9t%C3%A9%20%231.jpg"
        );
    }

    #[test]
    fn a_key_without_segments_has_no_url() {
        assert_eq!(cdn("https://cdn.example.com").url("/./"), "");
    }

    #[test]
    fn rejects_base_urls_that_cannot_prefix_media() {
        for (base, message) in [
            ("cdn.example.com", "not an absolute URL"),
            ("", "not an absolute URL"),
            ("ftp://cdn.example.com", "scheme must be http or https"),
            ("file:///srv/media", "scheme must be http or https"),
            (
                "https://user:pw@cdn.example.com",
                "must not contain credentials",
            ),
            (
                "https://cdn.example.com/?v=1",
                "must not have a query or fragment",
            ),
            (
                "https://cdn.example.com/#top",
                "must not have a query or fragment",
            ),
        ] {
            let err = CdnMediaUrls::new(base).unwrap_err();
            assert_eq!(err.var, "CDN_BASE_URL", "{base}");
            assert!(err.to_string().starts_with("CDN_BASE_URL: "), "{err}");
            assert!(err.message.contains(message), "{base}: {err}");
        }
    }
}
