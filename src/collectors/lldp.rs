//! `lldp`: raw LLDP TLVs per interface, under `lldp_raw` (IPA's `collect_lldp`).

use super::{one, Collected, Collector, CollectorInput};

pub struct Lldp;

impl Collector for Lldp {
    fn name(&self) -> &str {
        "lldp"
    }

    fn collect(&self, input: &CollectorInput) -> Result<Collected, String> {
        // IPA listens on the interfaces it inventories: physical, VLANs and bonds.
        let names = crate::hardware::nics::interface_names(input.host);
        let raw = crate::hardware::lldp::lldp_raw(&names, input.config.lldp_timeout);
        Ok(one("lldp_raw", raw))
    }
}
