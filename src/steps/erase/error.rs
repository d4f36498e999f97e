//! What can go wrong while erasing, as one sentence naming the device and the operation, and
//! how each failure reaches Ironic (IPA's `BlockDeviceEraseError` / `ProtectedDeviceError`).

use crate::errors::{CommandError, ErrorKind, IntoCommandError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EraseError {
    /// One operation on one device failed.
    #[error("Erasing {device} failed: {reason}")]
    Device { device: String, reason: String },

    /// Wiping the metadata (signatures, partition tables) of a device failed.
    #[error("Erasing the metadata of {device} failed: {reason}")]
    Metadata { device: String, reason: String },

    /// A secure erase failed and the conductor did not allow falling back to overwriting.
    #[error(
        "Failed to invoke secure erase of {device}, fallback to overwriting the device is not \
         enabled: {reason}"
    )]
    SecureEraseFailed { device: String, reason: String },

    /// IPA's wording for read-only devices when `agent_erase_skip_read_only` is not set.
    #[error(
        "Failed to invoke erase of device {0} as the device is flagged read-only, and the \
         conductor has not signaled this is a permitted case."
    )]
    ReadOnly(String),

    /// A shared-storage file system or partition was found (IPA's ProtectedDeviceError).
    #[error(
        "Protected {what} located on device {device}. This volume or contents may be a shared \
         block device. Please consult your storage administrator, and restart cleaning after \
         either detaching the volumes, or instructing IPA to not protect contents. See Ironic \
         Python Agent documentation for more information."
    )]
    Protected { device: String, what: String },

    /// The agent may not write the device (not a ramdisk, device not allowed).
    #[error("{0}")]
    Refused(String),

    /// Finding the devices to erase failed.
    #[error("Listing the devices to erase failed: {0}")]
    Listing(String),

    /// Several devices failed; each sentence names its device.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))]
    Several(Vec<EraseError>),
}

impl EraseError {
    pub fn device(device: &str, reason: impl Into<String>) -> Self {
        Self::Device {
            device: device.to_string(),
            reason: reason.into(),
        }
    }

    pub fn metadata(device: &str, reason: impl Into<String>) -> Self {
        Self::Metadata {
            device: device.to_string(),
            reason: reason.into(),
        }
    }

    /// One error for a list of per-device failures (`None` when there were none).
    pub fn combine(mut errors: Vec<EraseError>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Self::Several(errors)),
        }
    }

    fn is_protected(&self) -> bool {
        match self {
            Self::Protected { .. } => true,
            Self::Several(all) => all.iter().any(Self::is_protected),
            _ => false,
        }
    }
}

impl IntoCommandError for EraseError {
    fn into_command_error(self) -> CommandError {
        if self.is_protected() {
            // IPA's ProtectedDeviceError replaces its summary with the details.
            let mut e = CommandError::new(ErrorKind::ProtectedDevice, self.to_string());
            e.message = e.details.clone();
            return e;
        }
        CommandError::new(ErrorKind::BlockDeviceErase, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_device_and_map_to_ipa_types() {
        let e = EraseError::device(
            "/dev/nvme0n1",
            "NVMe Format NVM returned status 0x2 (Invalid Field in Command)",
        );
        assert_eq!(
            e.to_string(),
            "Erasing /dev/nvme0n1 failed: NVMe Format NVM returned status 0x2 (Invalid Field in Command)"
        );
        let c = e.into_command_error();
        assert_eq!((c.kind.as_str(), c.code), ("BlockDeviceEraseError", 500));
        assert_eq!(c.message, "Error erasing block device");

        let p = EraseError::Protected {
            device: "/dev/sdb1".into(),
            what: "Red Hat Global File System 2".into(),
        }
        .into_command_error();
        assert_eq!(p.kind, "ProtectedDeviceError");
        assert!(p
            .details
            .starts_with("Protected Red Hat Global File System 2 located on device /dev/sdb1."));
        assert_eq!(p.message, p.details);
    }

    #[test]
    fn several_failures_read_as_consecutive_sentences() {
        let e = EraseError::combine(vec![
            EraseError::metadata("/dev/sda", "cannot open it: Permission denied"),
            EraseError::ReadOnly("/dev/sdb".into()),
        ])
        .unwrap();
        let s = e.to_string();
        assert!(s.starts_with("Erasing the metadata of /dev/sda failed: cannot open it"));
        assert!(s.contains(" Failed to invoke erase of device /dev/sdb as the device is flagged"));
        assert!(EraseError::combine(vec![]).is_none());
    }
}
