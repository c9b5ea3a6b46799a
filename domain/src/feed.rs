//! Feed sessions and the pages cut from them.

use crate::ids::{CreatorId, SessionId, UserId, VideoId};
use crate::signals::SignalValues;
use crate::weights::Weights;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a video is in the user's feed: the strongest source that proposed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A recent video of a creator the user follows.
    Following,
    /// A creator the user interacts with.
    Affinity,
    /// Among the most engaging videos of the last 24 hours.
    Trending,
    /// Published in the last 30 days.
    Fresh,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Following => "following",
            Self::Affinity => "affinity",
            Self::Trending => "trending",
            Self::Fresh => "fresh",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Following, Self::Affinity, Self::Trending, Self::Fresh]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Page size: an integer from 1 to 50.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(u8);

/// A page size outside 1..=50.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("limit must be an integer from {min} to {max}", min = Limit::MIN, max = Limit::MAX)]
pub struct LimitError;

impl Limit {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 50;
    pub const DEFAULT: Limit = Limit(40);

    pub fn new(n: i64) -> Result<Self, LimitError> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&n) {
            Ok(Self(n as u8))
        } else {
            Err(LimitError)
        }
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One ranked video of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionItem {
    pub video_id: VideoId,
    pub creator_id: CreatorId,
    pub score: f64,
    pub reason: Reason,
    pub signals: SignalValues,
}

/// A ranked list of videos for one user; pages are cut from it in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    /// After this the session and every cursor into it are gone.
    pub expires_at: DateTime<Utc>,
    /// The (renormalized) weights the items were scored with, for explanations.
    pub weights: Weights,
    /// Unique videos, best first.
    pub items: Vec<SessionItem>,
    /// The experiment variants the session was ranked by; every page of it is served by them.
    #[serde(default)]
    pub experiments: Vec<crate::experiment::Assignment>,
}

/// The positions of a page within its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSlice {
    /// Indexes into `FeedSession::items`, in the order they are served (session order, except
    /// where the diversity re-check of [`FeedSession::slice_diverse`] holds one back).
    pub indexes: Vec<usize>,
    /// Where the next page starts; `None` when nothing servable remains after this page.
    pub next: Option<usize>,
}

impl FeedSession {
    /// Cuts a page: from `start`, the first `limit` items that `take` accepts. `servable` tells
    /// which items a later page could still show; it decides whether there is a next page.
    pub fn slice(
        &self,
        start: usize,
        limit: Limit,
        take: impl Fn(&SessionItem) -> bool,
        servable: impl Fn(&SessionItem) -> bool,
    ) -> PageSlice {
        let mut indexes = Vec::with_capacity(limit.get());
        let mut position = start.min(self.items.len());
        while position < self.items.len() && indexes.len() < limit.get() {
            if take(&self.items[position]) {
                indexes.push(position);
            }
            position += 1;
        }
        let more = self.items[position..].iter().any(servable);
        PageSlice {
            indexes,
            next: more.then_some(position),
        }
    }

    /// Like [`FeedSession::slice`], but the page also meets the diversity rules on its own: no two
    /// adjacent items of one creator and at most `max_per_window` of one creator in any `window`
    /// consecutive items, counting the end of the previous page (approximated by the servable
    /// items just before `start`). Leaving out watched, deleted or already served items can bring two videos of one
    /// creator together; such an item waits for a later slot of the page, and one that finds
    /// none is left out of the session. Only when nothing else is left does an item that breaks
    /// the rules still fill the page.
    pub fn slice_diverse(
        &self,
        start: usize,
        limit: Limit,
        take: impl Fn(&SessionItem) -> bool,
        servable: impl Fn(&SessionItem) -> bool,
        window: usize,
        max_per_window: usize,
    ) -> PageSlice {
        let lookback = window.saturating_sub(1);
        let start = start.min(self.items.len());
        // The creators just before this page, most recent last.
        let mut recent: Vec<CreatorId> = self.items[..start]
            .iter()
            .rev()
            .filter(|i| servable(i))
            .take(lookback.max(1))
            .map(|i| i.creator_id)
            .collect();
        recent.reverse();
        let fits = |recent: &[CreatorId], creator: CreatorId| {
            let adjacent = recent.last() == Some(&creator);
            let window_start = recent.len().saturating_sub(lookback);
            let in_window = recent[window_start..]
                .iter()
                .filter(|&&c| c == creator)
                .count();
            !adjacent && (lookback == 0 || in_window < max_per_window.max(1))
        };
        let mut indexes = Vec::with_capacity(limit.get());
        let mut waiting: Vec<usize> = Vec::new();
        let mut position = start;
        while indexes.len() < limit.get() {
            if let Some(k) = waiting
                .iter()
                .position(|&i| fits(&recent, self.items[i].creator_id))
            {
                let i = waiting.remove(k);
                indexes.push(i);
                recent.push(self.items[i].creator_id);
                continue;
            }
            // At most a window's worth waits: past that, the rules cannot be met nearby anyway.
            if position >= self.items.len() || waiting.len() >= window.max(1) {
                // Nothing fits any more: what waits fills the page rather than be lost.
                if waiting.is_empty() {
                    break;
                }
                let i = waiting.remove(0);
                indexes.push(i);
                recent.push(self.items[i].creator_id);
                continue;
            }
            let item = &self.items[position];
            if take(item) {
                if fits(&recent, item.creator_id) {
                    indexes.push(position);
                    recent.push(item.creator_id);
                } else {
                    waiting.push(position);
                }
            }
            position += 1;
        }
        let more = self.items[position..].iter().any(servable);
        PageSlice {
            indexes,
            next: more.then_some(position),
        }
    }

    /// How many items `take` accepts; a cached session is reused while this covers a page.
    pub fn count(&self, take: impl Fn(&SessionItem) -> bool) -> usize {
        self.items.iter().filter(|i| take(i)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn session(n: u128) -> FeedSession {
        let now = Utc::now();
        FeedSession {
            experiments: Vec::new(),
            id: SessionId(Uuid::from_u128(1)),
            user_id: UserId(Uuid::from_u128(2)),
            created_at: now,
            expires_at: now,
            weights: Weights::DEFAULT,
            items: (0..n)
                .map(|i| SessionItem {
                    video_id: VideoId(Uuid::from_u128(100 + i)),
                    creator_id: CreatorId(Uuid::from_u128(i)),
                    score: 1.0 - i as f64 / 100.0,
                    reason: Reason::Fresh,
                    signals: SignalValues::default(),
                })
                .collect(),
        }
    }

    fn of_creators(creators: &[u128]) -> FeedSession {
        let mut s = session(creators.len() as u128);
        for (item, &c) in s.items.iter_mut().zip(creators) {
            item.creator_id = CreatorId(Uuid::from_u128(c));
        }
        s
    }

    fn creators_of(s: &FeedSession, slice: &PageSlice) -> Vec<u128> {
        slice
            .indexes
            .iter()
            .map(|&i| s.items[i].creator_id.0.as_u128())
            .collect()
    }

    #[test]
    fn a_filtered_page_keeps_creators_apart() {
        // B A C A: leaving out C puts the two A next to each other.
        let s = of_creators(&[2, 1, 3, 1, 4, 5]);
        let without_c = |i: &SessionItem| i.creator_id.0.as_u128() != 3;
        let page = s.slice_diverse(
            0,
            Limit::new(4).unwrap_or_default(),
            without_c,
            without_c,
            10,
            2,
        );
        assert_eq!(creators_of(&s, &page), vec![2, 1, 4, 1]);
        assert_eq!(page.next, Some(5));
    }

    #[test]
    fn the_end_of_the_previous_page_counts() {
        let s = of_creators(&[1, 2, 2, 3, 4]);
        let all = |_: &SessionItem| true;
        let page = s.slice_diverse(2, Limit::new(2).unwrap_or_default(), all, all, 10, 2);
        assert_eq!(
            creators_of(&s, &page),
            vec![3, 2],
            "no 2 right after the previous page's 2"
        );
    }

    #[test]
    fn with_nothing_else_left_a_waiting_item_still_fills_the_page() {
        let s = of_creators(&[1, 1, 1]);
        let all = |_: &SessionItem| true;
        let page = s.slice_diverse(0, Limit::new(3).unwrap_or_default(), all, all, 10, 2);
        assert_eq!(page.indexes.len(), 3);
        assert_eq!(page.next, None);
    }

    #[test]
    fn limit_bounds() {
        assert!(Limit::new(0).is_err());
        assert!(Limit::new(51).is_err());
        assert_eq!(Limit::new(1).map(Limit::get), Ok(1));
        assert_eq!(Limit::new(50).map(Limit::get), Ok(50));
        assert_eq!(Limit::default().get(), 40);
    }

    #[test]
    fn slices_consecutive_pages_without_overlap() {
        let s = session(10);
        let limit = Limit::new(4).unwrap_or_default();
        let first = s.slice(0, limit, |_| true, |_| true);
        assert_eq!(first.indexes, vec![0, 1, 2, 3]);
        assert_eq!(first.next, Some(4));
        let second = s.slice(4, limit, |_| true, |_| true);
        assert_eq!(second.indexes, vec![4, 5, 6, 7]);
        let last = s.slice(8, limit, |_| true, |_| true);
        assert_eq!(last.indexes, vec![8, 9]);
        assert_eq!(last.next, None);
    }

    #[test]
    fn skipped_items_are_passed_over_and_end_the_feed_when_nothing_is_left() {
        let s = session(6);
        let skip_odd = |i: &SessionItem| i.video_id.0.as_u128().is_multiple_of(2);
        let page = s.slice(0, Limit::new(2).unwrap_or_default(), skip_odd, skip_odd);
        assert_eq!(page.indexes, vec![0, 2]);
        assert_eq!(page.next, Some(3));
        let rest = s.slice(3, Limit::new(2).unwrap_or_default(), skip_odd, skip_odd);
        assert_eq!(rest.indexes, vec![4]);
        assert_eq!(rest.next, None);
    }
}
