//! Object keys as URL paths.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::borrow::Cow;

/// Everything but RFC 3986 unreserved characters is encoded. SigV4 canonical URIs use the same
/// set (rusty-s3 encodes S3 paths with it), so CDN and S3 URLs spell a key identically.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether a segment is dropped: empty ones would make double slashes, and URL parsers, CDNs and
/// S3 resolve `.` and `..`, so a key holding `..` could address an object outside the media prefix
/// (with path-style S3, in another bucket) under a valid signature.
fn dropped(segment: &str) -> bool {
    matches!(segment, "" | "." | "..")
}

/// Appends `/<segment>` for each kept segment of `key`, percent-encoded; returns whether any was.
pub(crate) fn push_encoded_path(out: &mut String, key: &str) -> bool {
    let mut any = false;
    for segment in key.split('/').filter(|s| !dropped(s)) {
        out.push('/');
        out.extend(utf8_percent_encode(segment, SEGMENT));
        any = true;
    }
    any
}

/// `key` without its dropped segments, not encoded; borrowed when nothing was dropped, which is
/// the common case.
pub(crate) fn normalized(key: &str) -> Cow<'_, str> {
    if !key.split('/').any(dropped) {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    for segment in key.split('/').filter(|s| !dropped(s)) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(segment);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(key: &str) -> String {
        let mut out = String::new();
        push_encoded_path(&mut out, key);
        out
    }

    #[test]
    fn encodes_each_segment_but_keeps_unreserved_characters() {
        assert_eq!(
            encoded("videos/a-b_c.d~e/v1.mp4"),
            "/videos/a-b_c.d~e/v1.mp4"
        );
        assert_eq!(
            encoded("my video/caf\u{e9} 1.mp4"),
            "/my%20video/caf%C3%A9%201.mp4"
        );
        assert_eq!(encoded("a+b/c?d#e%f&g=h"), "/a%2Bb/c%3Fd%23e%25f%26g%3Dh");
        assert_eq!(encoded("\u{1F3AC}.jpg"), "/%F0%9F%8E%AC.jpg");
    }

    #[test]
    fn drops_empty_and_dot_segments() {
        assert_eq!(encoded("/a//b/"), "/a/b");
        assert_eq!(encoded("a/./../b/.../c"), "/a/b/.../c");
        assert_eq!(encoded("//"), "");
        assert!(!push_encoded_path(&mut String::new(), "./.."));
    }

    #[test]
    fn normalizes_without_copying_clean_keys() {
        assert!(matches!(normalized("a/b c/d"), Cow::Borrowed("a/b c/d")));
        assert_eq!(normalized("/a//../b/"), "a/b");
        assert_eq!(normalized(".."), "");
    }
}
