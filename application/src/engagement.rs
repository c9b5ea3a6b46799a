//! Record engagement: validate a batch all-or-nothing, remember watches and hides at once (so the next page
//! leaves them out), and hand the events to the event sink.
//!
//! Likes, shares and comments count once per user, video and type within the reaction window, and
//! an unlike only when it cancels a like (see [`Reaction`]): repeats are answered as duplicates,
//! so one account cannot push a video up every feed's engagement signal.
//!
//! An event counts as accepted only once the sink has it durably; only then is its id written to
//! the event ledger. A retry of an event that was never accepted (sink down, client gone, process
//! killed mid-request) is therefore accepted again, never mistaken for a duplicate; a retry of an
//! accepted one is answered as a duplicate, and if the ledger missed it, the pipeline behind the
//! sink (idempotent by `event_id`) still applies it once.

use crate::ports::{EventLedger, PortError, Ports, PublishOutcome};
use crate::snapshot::CandidateSnapshot;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;
use vrs_domain::{CreatorId, EngagementEvent, EventError, EventType, Reaction, UserId, VideoId};

/// Most events one request may carry.
pub const MAX_BATCH: usize = 100;

/// An event as a client sent it, already shaped but not yet checked against the catalog.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub video_id: VideoId,
    pub event_type: EventType,
    pub watch_ms: Option<u64>,
    pub completion: Option<f64>,
    /// Defaults to the time the batch is received.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The result of an accepted batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Events newly accepted.
    pub accepted: usize,
    /// Events not newly accepted: ids seen before, and reactions that did not count.
    pub duplicates: usize,
    /// The reactions (among the duplicates) that did not count: a like, share or comment the
    /// user already had on the video within the window, or an unlike with no like to cancel.
    pub repeated_reactions: Vec<Uuid>,
}

/// Why a batch was refused. Nothing of a refused batch is recorded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngagementError {
    #[error("the batch must hold 1 to {MAX_BATCH} events")]
    BatchSize,
    #[error("events[{index}].{}: {}", .error.field, .error.message)]
    Invalid { index: usize, error: EventError },
    #[error("events cannot be recorded right now")]
    Unavailable(#[source] PortError),
}

/// The record-engagement use case.
pub struct EngagementService {
    ports: Ports,
    snapshot: Arc<CandidateSnapshot>,
    /// Claims reactions while the event ledger cannot (an in-process ledger): without it, one
    /// account could inflate a video's likes for as long as the ledger is down.
    local_reactions: Option<Arc<dyn EventLedger>>,
}

impl std::fmt::Debug for EngagementService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngagementService").finish_non_exhaustive()
    }
}

impl EngagementService {
    pub fn new(ports: Ports, snapshot: Arc<CandidateSnapshot>) -> Self {
        // Both series exist from the start, so the first error shows in rate() at once.
        for operation in ["read", "write", "claim"] {
            metrics::counter!("event_ledger_errors_total", "operation" => operation).increment(0);
        }
        for kind in EventType::ALL.into_iter().filter(|t| t.is_reaction()) {
            metrics::counter!("engagement_reactions_repeated_total", "type" => kind.as_str())
                .increment(0);
        }
        Self {
            ports,
            snapshot,
            local_reactions: None,
        }
    }

    /// Claims reactions in `local` while the event ledger is unavailable.
    pub fn with_local_reactions(mut self, local: Arc<dyn EventLedger>) -> Self {
        self.local_reactions = Some(local);
        self
    }

    /// Claims the reactions among `events`; returns the ledger that holds the claims and the
    /// events that count (a repeated like, share or comment, or an unlike with nothing to
    /// cancel, does not).
    async fn claim_reactions(
        &self,
        user: UserId,
        events: Vec<EngagementEvent>,
    ) -> (
        Option<(Arc<dyn EventLedger>, Vec<Reaction>)>,
        Vec<EngagementEvent>,
        Vec<Uuid>,
    ) {
        let reactions: Vec<Reaction> = events
            .iter()
            .filter(|e| e.event_type.is_reaction())
            .map(|e| Reaction {
                event_id: e.event_id,
                video_id: e.video_id,
                event_type: e.event_type,
            })
            .collect();
        if reactions.is_empty() {
            return (None, events, Vec::new());
        }
        let mut ledger = self.ports.event_ledger.clone();
        let mut counts = ledger.claim_reactions(user, &reactions).await;
        if !matches!(&counts, Ok(c) if c.len() == reactions.len()) {
            metrics::counter!("event_ledger_errors_total", "operation" => "claim").increment(1);
            tracing::warn!("event ledger cannot claim reactions; claiming them in this process");
            counts = match &self.local_reactions {
                Some(local) => {
                    ledger = local.clone();
                    ledger.claim_reactions(user, &reactions).await
                }
                None => Ok(vec![true; reactions.len()]),
            };
        }
        let counts = match counts {
            Ok(c) if c.len() == reactions.len() => c,
            _ => vec![true; reactions.len()],
        };
        let repeated: HashSet<Uuid> = reactions
            .iter()
            .zip(&counts)
            .filter_map(|(r, &counts)| (!counts).then_some(r.event_id))
            .collect();
        let claimed = reactions
            .into_iter()
            .zip(counts)
            .filter_map(|(r, counts)| counts.then_some(r))
            .collect();
        let events = events
            .into_iter()
            .filter(|e| {
                let repeat = repeated.contains(&e.event_id);
                if repeat {
                    metrics::counter!("engagement_reactions_repeated_total", "type" => e.event_type.as_str())
                        .increment(1);
                }
                !repeat
            })
            .collect();
        let mut repeated: Vec<Uuid> = repeated.into_iter().collect();
        repeated.sort_unstable();
        (Some((ledger, claimed)), events, repeated)
    }

    /// Validates and records a batch of one user's events.
    #[tracing::instrument(name = "engagement.record", skip_all, fields(user_id = %user, events = events.len()))]
    pub async fn record(
        &self,
        user: UserId,
        events: Vec<NewEvent>,
    ) -> Result<RecordOutcome, EngagementError> {
        if events.is_empty() || events.len() > MAX_BATCH {
            return Err(EngagementError::BatchSize);
        }
        let now = self.ports.clock.now();
        let total = events.len();
        let creators = self.resolve_creators(&events).await?;
        let mut accepted = Vec::with_capacity(events.len());
        for (index, e) in events.into_iter().enumerate() {
            let &(creator_id, duration_seconds) =
                creators.get(&e.video_id).ok_or(EngagementError::Invalid {
                    index,
                    error: EventError::new("video_id", "no video has this id"),
                })?;
            // A watch reported by its duration alone completes the share of the video it covers
            // (not 0, which would count it as abandoned at once).
            let completion = match (e.completion, e.event_type, e.watch_ms) {
                (None, EventType::Watch, Some(ms)) if duration_seconds > 0 => {
                    Some((ms as f64 / (f64::from(duration_seconds) * 1000.0)).min(1.0))
                }
                (given, _, _) => given,
            };
            let event = EngagementEvent {
                event_id: e.event_id,
                user_id: user,
                video_id: e.video_id,
                creator_id,
                event_type: e.event_type,
                watch_ms: e.watch_ms,
                completion,
                occurred_at: e.occurred_at.unwrap_or(now),
            };
            event
                .validate(now)
                .map_err(|error| EngagementError::Invalid { index, error })?;
            accepted.push(event);
        }

        // Repeats within the batch count once; ids the ledger recorded before are duplicates.
        let mut seen = HashSet::with_capacity(accepted.len());
        let unique: Vec<EngagementEvent> = accepted
            .into_iter()
            .filter(|e| seen.insert(e.event_id))
            .collect();
        let mut repeated = total - unique.len();
        let ids: Vec<Uuid> = unique.iter().map(|e| e.event_id).collect();
        let fresh: Vec<EngagementEvent> = match self.ports.event_ledger.recorded(user, &ids).await {
            Ok(flags) if flags.len() == unique.len() => {
                repeated += flags.iter().filter(|&&known| known).count();
                unique
                    .into_iter()
                    .zip(flags)
                    .filter_map(|(e, known)| (!known).then_some(e))
                    .collect()
            }
            // Without the ledger every event goes on: downstream deduplication still applies each
            // one once, and refusing the batch would lose what the client cannot resend forever.
            Ok(_) | Err(_) => {
                metrics::counter!("event_ledger_errors_total", "operation" => "read").increment(1);
                tracing::warn!("event ledger unavailable; relying on downstream deduplication");
                unique
            }
        };
        let before = fresh.len();
        let (claims, fresh, repeated_reactions) = self.claim_reactions(user, fresh).await;
        repeated += before - fresh.len();
        if fresh.is_empty() {
            return Ok(RecordOutcome {
                accepted: 0,
                duplicates: repeated,
                repeated_reactions,
            });
        }
        let outcome = match self.accept(user, &fresh, now).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // Nothing was accepted: the reactions' claims go back, so a retry counts.
                if let Some((ledger, claimed)) = claims
                    && let Err(release) = ledger.release_reactions(user, &claimed).await
                {
                    tracing::warn!(error = %release, "could not release reaction claims");
                }
                return Err(e);
            }
        };
        let accepted_ids: Vec<Uuid> = fresh.iter().map(|e| e.event_id).collect();
        if let Err(e) = self.ports.event_ledger.record(user, &accepted_ids).await {
            metrics::counter!("event_ledger_errors_total", "operation" => "write").increment(1);
            tracing::warn!(error = %e, "could not record accepted event ids; a retry is deduplicated downstream");
        }
        Ok(RecordOutcome {
            accepted: outcome.accepted,
            duplicates: repeated + outcome.duplicates,
            repeated_reactions,
        })
    }

    /// Remembers watches and hides, then hands the events to the sink.
    async fn accept(
        &self,
        user: UserId,
        events: &[EngagementEvent],
        now: DateTime<Utc>,
    ) -> Result<PublishOutcome, EngagementError> {
        // Watches are remembered before the sink accepts the batch: if the sink then fails, the
        // client retries and the (idempotent) watch is simply recorded again.
        let watched: Vec<VideoId> = events
            .iter()
            .filter(|e| e.event_type.is_watch())
            .map(|e| e.video_id)
            .collect();
        if !watched.is_empty() {
            self.ports
                .history
                .record_watched(user, &watched, now)
                .await
                .map_err(EngagementError::Unavailable)?;
        }
        // Likewise what the user hid: the next page, even of a cached session, leaves it out.
        let not_interested: Vec<VideoId> = events
            .iter()
            .filter(|e| e.event_type == EventType::NotInterested)
            .map(|e| e.video_id)
            .collect();
        let hidden_creators: Vec<CreatorId> = events
            .iter()
            .filter(|e| e.event_type == EventType::HideCreator)
            .map(|e| e.creator_id)
            .collect();
        if !not_interested.is_empty() || !hidden_creators.is_empty() {
            self.ports
                .history
                .record_hidden(user, &not_interested, &hidden_creators, now)
                .await
                .map_err(EngagementError::Unavailable)?;
        }
        let outcome = self
            .ports
            .events
            .publish(events)
            .await
            .map_err(EngagementError::Unavailable)?;
        for e in events {
            metrics::counter!("engagement_events_accepted_total", "type" => e.event_type.as_str())
                .increment(1);
        }
        Ok(outcome)
    }

    /// Creator and duration of every video in the batch, from the snapshot or else the catalog. A video deleted
    /// or unpublished after it was served still resolves: the client cannot avoid that race, and
    /// its event is real. Only ids the catalog never knew are left out.
    async fn resolve_creators(
        &self,
        events: &[NewEvent],
    ) -> Result<HashMap<VideoId, (CreatorId, u32)>, EngagementError> {
        let mut creators = HashMap::new();
        let mut missing = Vec::new();
        let snapshot = self.snapshot.load();
        for e in events {
            match snapshot.as_ref().and_then(|s| s.pool.get(&e.video_id)) {
                Some(entry) => {
                    creators.insert(
                        e.video_id,
                        (entry.video.creator_id, entry.video.duration_seconds),
                    );
                }
                None => missing.push(e.video_id),
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            let videos = self
                .ports
                .catalog
                .videos_by_ids(&missing)
                .await
                .map_err(EngagementError::Unavailable)?;
            for v in videos {
                creators.insert(v.id, (v.creator_id, v.duration_seconds));
            }
        }
        Ok(creators)
    }
}
