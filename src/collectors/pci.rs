//! `pci-devices`: IPA's `collect_pci_devices_info`, under `pci_devices`.

use super::{one, Collected, Collector, CollectorInput};

pub struct PciDevices;

impl Collector for PciDevices {
    fn name(&self) -> &str {
        "pci-devices"
    }

    fn collect(&self, input: &CollectorInput) -> Result<Collected, String> {
        let v = crate::hardware::pci::pci_devices(input.host).map_err(|e| e.to_string())?;
        Ok(one("pci_devices", v))
    }
}
