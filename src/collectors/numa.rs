//! `numa-topology`: IPA's `numa_inspector`, under `numa_topology`.

use super::{one, Collected, Collector, CollectorInput};

pub struct NumaTopology;

impl Collector for NumaTopology {
    fn name(&self) -> &str {
        "numa-topology"
    }

    fn collect(&self, input: &CollectorInput) -> Result<Collected, String> {
        match crate::hardware::numa::numa_topology(input.host) {
            Ok(v) => Ok(one("numa_topology", v)),
            // As IPA: missing or odd NUMA data is logged and left out, not a failure.
            Err(e) => {
                tracing::warn!("leaving numa_topology out of the inspection data: {e}");
                Ok(Collected::new())
            }
        }
    }
}
