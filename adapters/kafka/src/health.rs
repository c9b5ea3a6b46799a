//! The `event_spool` health probe: unhealthy while events wait in the spool or Kafka is unreachable.

use crate::sink::Shared;
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vrs_application::ports::{HealthProbe, PortError};

/// Name of the probe in the health report.
pub const EVENT_SPOOL_PROBE: &str = "event_spool";

/// Reports the Kafka event sink's backlog and broker reachability.
#[derive(Clone, Debug)]
pub struct EventSpoolProbe {
    shared: Arc<Shared>,
}

impl EventSpoolProbe {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl HealthProbe for EventSpoolProbe {
    fn name(&self) -> &'static str {
        EVENT_SPOOL_PROBE
    }

    async fn check(&self) -> Result<(), PortError> {
        let spooled = self.shared.spool.len();
        if spooled > 0 {
            return Err(PortError::Unavailable(format!(
                "{spooled} events ({} bytes) wait in the spool for kafka",
                self.shared.spool.bytes()
            )));
        }
        if !self.shared.broker_reachable.load(Ordering::Relaxed) {
            return Err(PortError::Unavailable("kafka is unreachable".into()));
        }
        Ok(())
    }
}
