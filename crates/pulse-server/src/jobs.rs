//! Aggregation jobs declared in the configuration.
//!
//! The jobs endpoints and the scheduler are wired in once `pulse-batch` and
//! `pulse-scheduler` provide the engine; until then the server keeps the validated job
//! declarations only.

use std::sync::Arc;

use crate::config::JobSpec;

/// The configured jobs; cheap to clone.
#[derive(Clone, Default)]
pub struct Jobs {
    specs: Arc<Vec<JobSpec>>,
}

impl Jobs {
    /// Jobs from the configuration.
    pub fn new(specs: Vec<JobSpec>) -> Self {
        Self {
            specs: Arc::new(specs),
        }
    }

    /// The declarations.
    pub fn specs(&self) -> &[JobSpec] {
        &self.specs
    }
}
