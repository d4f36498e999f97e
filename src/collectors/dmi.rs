//! `dmi-decode`: IPA's `dmi_inspector` (dmidecode's output parsed), from a native SMBIOS parser.

use super::{one, Collected, Collector, CollectorInput};

pub struct DmiDecode;

impl Collector for DmiDecode {
    fn name(&self) -> &str {
        "dmi-decode"
    }

    fn collect(&self, input: &CollectorInput) -> Result<Collected, String> {
        let v = crate::hardware::dmi_decode::dmi_decode(input.host).map_err(|e| e.to_string())?;
        Ok(one("dmi", v))
    }
}
