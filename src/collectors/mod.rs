//! The inspection collectors (contract §10.2), keyed by the names IPA's
//! `ironic_python_agent.inspector.collectors` entry points use.
//!
//! A collector is a small synchronous object: it reads the host and returns the keys it adds to
//! the inspection body. The registry runs each one on a blocking thread, so sysfs walks, LLDP
//! listening, benchmarks and child processes never hold up the async workers. New collectors
//! (built-in modules or plugins) are one `register` call; a later registration under the same
//! name replaces the earlier one.

mod default;
mod dmi;
mod lldp;
mod logs;
mod numa;
mod pci;

use crate::config::Config;
use crate::hardware::{HostRoot, Inventory};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;

/// What a collector may read.
pub struct CollectorInput<'a> {
    pub host: &'a HostRoot,
    pub config: &'a Config,
    /// The agent's state directory (`/run/ironic-agent`), for the logs collector.
    pub state_dir: &'a Path,
    /// The inventory taken once before the collectors run.
    pub inventory: &'a Inventory,
}

/// The keys a collector adds to the inspection body; empty when it has nothing to say.
pub type Collected = Map<String, Value>;

/// One inspection collector.
pub trait Collector: Send + Sync {
    /// IPA's name for it, as operators write it in `ipa-inspection-collectors`.
    fn name(&self) -> &str;

    /// Runs on a blocking thread. An error is one sentence; it lands in the body's `error`.
    fn collect(&self, input: &CollectorInput) -> Result<Collected, String>;
}

/// One key and its value: what most collectors return.
pub fn one(key: &str, value: Value) -> Collected {
    let mut m = Map::new();
    m.insert(key.to_string(), value);
    m
}

/// The collectors the agent knows, in registration order.
#[derive(Clone, Default)]
pub struct CollectorRegistry {
    collectors: Vec<Arc<dyn Collector>>,
}

impl CollectorRegistry {
    /// The built-in collectors.
    pub fn new() -> Self {
        let mut r = Self::default();
        r.register(Arc::new(default::Default));
        r.register(Arc::new(logs::Logs));
        r.register(Arc::new(pci::PciDevices));
        r.register(Arc::new(numa::NumaTopology));
        r.register(Arc::new(dmi::DmiDecode));
        r.register(Arc::new(lldp::Lldp));
        r
    }

    /// Adds a collector; one already registered under its name is replaced (and that is logged,
    /// because an operator who shadows a built-in should be able to see it happened).
    pub fn register(&mut self, collector: Arc<dyn Collector>) {
        if let Some(i) = self
            .collectors
            .iter()
            .position(|c| c.name() == collector.name())
        {
            tracing::info!(
                "inspection collector {} replaces the one registered before",
                collector.name()
            );
            self.collectors[i] = collector;
        } else {
            self.collectors.push(collector);
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Collector>> {
        self.collectors.iter().find(|c| c.name() == name).cloned()
    }

    /// Every registered name, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.collectors
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    }
}

impl std::fmt::Debug for CollectorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str, &'static str);
    impl Collector for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn collect(&self, _: &CollectorInput) -> Result<Collected, String> {
            Ok(one("by", Value::String(self.1.into())))
        }
    }

    #[test]
    fn builtins_have_ipas_names() {
        assert_eq!(
            CollectorRegistry::new().names(),
            [
                "default",
                "logs",
                "pci-devices",
                "numa-topology",
                "dmi-decode",
                "lldp"
            ]
        );
    }

    #[test]
    fn a_later_registration_replaces_the_earlier_one_in_place() {
        let mut r = CollectorRegistry::default();
        r.register(Arc::new(Named("a", "first")));
        r.register(Arc::new(Named("b", "b")));
        r.register(Arc::new(Named("a", "second")));
        assert_eq!(r.names(), ["a", "b"]);
        let host = HostRoot::new("/nonexistent");
        let input = CollectorInput {
            host: &host,
            config: &Config::default(),
            state_dir: Path::new("/nonexistent"),
            inventory: &Inventory::default(),
        };
        assert_eq!(r.get("a").unwrap().collect(&input).unwrap()["by"], "second");
        assert!(r.get("c").is_none());
    }
}
