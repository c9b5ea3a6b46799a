use chrono::{DateTime, Duration, Utc};
use std::sync::RwLock;
use vrs_application::ports::Clock;

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: RwLock<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: RwLock::new(now),
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.now.write() {
            *now += by;
        }
    }

    pub fn set(&self, to: DateTime<Utc>) {
        if let Ok(mut now) = self.now.write() {
            *now = to;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.read().map(|n| *n).unwrap_or_else(|_| Utc::now())
    }
}
