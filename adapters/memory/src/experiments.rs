use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::RwLock;
use uuid::Uuid;
use vrs_application::ports::{ExperimentStore, PortError, Transition};
use vrs_domain::{Experiment, ExperimentState};

/// Experiments in memory, in creation order.
#[derive(Debug, Default)]
pub struct MemoryExperimentStore {
    experiments: RwLock<Vec<Experiment>>,
}

#[async_trait]
impl ExperimentStore for MemoryExperimentStore {
    async fn create(&self, experiment: &Experiment) -> Result<bool, PortError> {
        let mut all = self.experiments.write().map_err(lock_error)?;
        if all
            .iter()
            .any(|e| e.name == experiment.name || e.id == experiment.id)
        {
            return Ok(false);
        }
        all.push(experiment.clone());
        Ok(true)
    }

    async fn experiments(&self) -> Result<Vec<Experiment>, PortError> {
        let all = self.experiments.read().map_err(lock_error)?;
        Ok(all.iter().rev().cloned().collect())
    }

    async fn experiment(&self, id: Uuid) -> Result<Option<Experiment>, PortError> {
        let all = self.experiments.read().map_err(lock_error)?;
        Ok(all.iter().find(|e| e.id == id).cloned())
    }

    async fn running(&self) -> Result<Vec<Experiment>, PortError> {
        let all = self.experiments.read().map_err(lock_error)?;
        Ok(all
            .iter()
            .filter(|e| e.state == ExperimentState::Running)
            .cloned()
            .collect())
    }

    async fn start(&self, id: Uuid, at: DateTime<Utc>) -> Result<Transition, PortError> {
        let mut all = self.experiments.write().map_err(lock_error)?;
        let Some(i) = all.iter().position(|e| e.id == id) else {
            return Ok(Transition::NotFound);
        };
        if all[i].state != ExperimentState::Draft {
            return Ok(Transition::WrongState(all[i].state));
        }
        if let Some(busy) = all
            .iter()
            .find(|e| e.state == ExperimentState::Running && e.layer == all[i].layer)
        {
            return Ok(Transition::LayerBusy(busy.name.clone()));
        }
        let e = &mut all[i];
        e.state = ExperimentState::Running;
        e.started_at = Some(at);
        Ok(Transition::Done(e.clone()))
    }

    async fn stop(&self, id: Uuid, at: DateTime<Utc>) -> Result<Transition, PortError> {
        let mut all = self.experiments.write().map_err(lock_error)?;
        let Some(e) = all.iter_mut().find(|e| e.id == id) else {
            return Ok(Transition::NotFound);
        };
        if e.state != ExperimentState::Running {
            return Ok(Transition::WrongState(e.state));
        }
        e.state = ExperimentState::Stopped;
        e.stopped_at = Some(at);
        Ok(Transition::Done(e.clone()))
    }
}
