//! Negative feedback as hard filters: what a user asked not to see again.

use crate::ids::{CreatorId, VideoId};
use std::collections::HashSet;

/// Videos a user marked "not interested" and creators they hid. Nothing of either is ranked for
/// or served to the user again, cached sessions included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hidden {
    pub videos: HashSet<VideoId>,
    pub creators: HashSet<CreatorId>,
}

impl Hidden {
    /// Whether a video (by id and creator) is hidden from the user.
    pub fn hides(&self, video: &VideoId, creator: &CreatorId) -> bool {
        self.videos.contains(video) || self.creators.contains(creator)
    }

    pub fn is_empty(&self) -> bool {
        self.videos.is_empty() && self.creators.is_empty()
    }

    /// Adds everything `other` hides.
    pub fn extend(&mut self, other: Hidden) {
        self.videos.extend(other.videos);
        self.creators.extend(other.creators);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_video_is_hidden_by_its_id_or_its_creator() {
        let (v, other_v) = (VideoId(Uuid::from_u128(1)), VideoId(Uuid::from_u128(2)));
        let (c, other_c) = (CreatorId(Uuid::from_u128(3)), CreatorId(Uuid::from_u128(4)));
        let mut hidden = Hidden::default();
        assert!(hidden.is_empty() && !hidden.hides(&v, &c));
        hidden.videos.insert(v);
        assert!(hidden.hides(&v, &other_c) && !hidden.hides(&other_v, &other_c));
        hidden.extend(Hidden {
            videos: HashSet::new(),
            creators: [c].into(),
        });
        assert!(hidden.hides(&other_v, &c) && !hidden.is_empty());
    }
}
