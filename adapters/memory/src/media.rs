use vrs_application::ports::MediaUrls;
use vrs_domain::Video;

/// Media URLs under a public base URL (a CDN origin): `<base>/<object key>`.
#[derive(Clone, Debug)]
pub struct BaseUrlMediaUrls {
    base: String,
}

impl BaseUrlMediaUrls {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
        }
    }
}

impl MediaUrls for BaseUrlMediaUrls {
    fn playback_url(&self, video: &Video) -> String {
        format!("{}/{}", self.base, video.media_key.trim_start_matches('/'))
    }

    fn thumbnail_url(&self, video: &Video) -> String {
        format!(
            "{}/{}",
            self.base,
            video.thumbnail_key.trim_start_matches('/')
        )
    }
}
