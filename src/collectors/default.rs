//! `default`: `inventory`, `root_disk`, `boot_interface` and `configuration`, as IPA's
//! `collect_default`.

use super::{Collected, Collector, CollectorInput};
use serde_json::{json, Map};

pub struct Default;

impl Collector for Default {
    fn name(&self) -> &str {
        "default"
    }

    fn collect(&self, input: &CollectorInput) -> Result<Collected, String> {
        let inventory = input.inventory;
        let mut data = Map::new();
        data.insert(
            "inventory".into(),
            serde_json::to_value(inventory).map_err(|e| e.to_string())?,
        );
        // The disk a deploy without hints would pick, so Ironic's root-device hook agrees with it.
        match crate::hardware::guess_root_disk(&inventory.disks) {
            Ok(disk) => {
                data.insert(
                    "root_disk".into(),
                    serde_json::to_value(disk).map_err(|e| e.to_string())?,
                );
            }
            Err(e) => tracing::warn!("no suitable root device detected: {e}"),
        }
        data.insert("boot_interface".into(), json!(input.config.bootif));
        data.insert(
            "configuration".into(),
            json!({
                "collectors": input.config.collectors(),
                "managers": [{"name": crate::steps::MANAGER_NAME, "version": crate::steps::MANAGER_VERSION}],
            }),
        );
        Ok(data)
    }
}
