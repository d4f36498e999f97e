//! The error vocabulary the conductor understands (IPA's `errors.py`, contract §7.5).
//!
//! Every command failure reaches Ironic as a `command_error` object
//! `{type, code, message, details}`; Ironic shows `details` (else `message`) to the operator as
//! the node's `last_error`, so `details` is always one clear sentence that names the operation
//! and the object (device, URL, step) that failed.

use serde::Serialize;

/// A failed command, serialised exactly as IPA's RESTError.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{details}")]
pub struct CommandError {
    /// IPA's error class name, e.g. `ImageDownloadError`; Ironic matches on some of them.
    #[serde(rename = "type")]
    pub kind: String,
    /// The class's HTTP-like status code (500 unless the class says otherwise).
    pub code: u16,
    /// The class's fixed summary.
    pub message: String,
    /// What exactly went wrong: the text the operator sees.
    pub details: String,
}

/// The error classes we raise, with their IPA names, codes and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    CommandExecution,
    InvalidCommand,
    InvalidCommandParams,
    InvalidContent,
    RequestedObjectNotFound,
    DeviceNotFound,
    AgentIsBusy,
    VersionMismatch,
    ImageDownload,
    ImageDownloadFatal,
    ImageDownloadOutOfSpace,
    ImageDownloadTimeout,
    ImageChecksum,
    ImageWrite,
    InvalidImage,
    Deployment,
    Cleaning,
    Servicing,
    BlockDeviceErase,
    ProtectedDevice,
    SystemReboot,
    IncompatibleHardwareMethod,
    /// A Python-level argument error in IPA; Ironic treats this type as an API error (§8.2).
    TypeError,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::CommandExecution => "CommandExecutionError",
            Self::InvalidCommand => "InvalidCommandError",
            Self::InvalidCommandParams => "InvalidCommandParamsError",
            Self::InvalidContent => "InvalidContentError",
            Self::RequestedObjectNotFound => "RequestedObjectNotFoundError",
            Self::DeviceNotFound => "DeviceNotFound",
            Self::AgentIsBusy => "AgentIsBusy",
            Self::VersionMismatch => "VersionMismatch",
            Self::ImageDownload => "ImageDownloadError",
            Self::ImageDownloadFatal => "ImageDownloadFatalError",
            Self::ImageDownloadOutOfSpace => "ImageDownloadOutofSpaceError",
            Self::ImageDownloadTimeout => "ImageDownloadTimeoutError",
            Self::ImageChecksum => "ImageChecksumError",
            Self::ImageWrite => "ImageWriteError",
            Self::InvalidImage => "InvalidImage",
            Self::Deployment => "DeploymentError",
            Self::Cleaning => "CleaningError",
            Self::Servicing => "ServicingError",
            Self::BlockDeviceErase => "BlockDeviceEraseError",
            Self::ProtectedDevice => "ProtectedDeviceError",
            Self::SystemReboot => "SystemRebootError",
            Self::IncompatibleHardwareMethod => "IncompatibleHardwareMethodError",
            Self::TypeError => "TypeError",
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Self::InvalidCommand
            | Self::InvalidCommandParams
            | Self::InvalidContent
            | Self::TypeError => 400,
            Self::RequestedObjectNotFound | Self::DeviceNotFound => 404,
            Self::ImageDownloadTimeout => 408,
            Self::AgentIsBusy | Self::VersionMismatch => 409,
            _ => 500,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::CommandExecution => "Command execution failed",
            Self::InvalidCommand => "Invalid command",
            Self::InvalidCommandParams => "Invalid command parameters",
            Self::InvalidContent => "Invalid request body",
            Self::RequestedObjectNotFound | Self::DeviceNotFound => "Not found",
            Self::AgentIsBusy => "Agent is busy",
            Self::VersionMismatch => {
                "Hardware managers version mismatch, reload agent with correct version"
            }
            Self::ImageDownload | Self::ImageDownloadFatal => "Error downloading image",
            Self::ImageDownloadOutOfSpace => "Out of space while downloading image",
            Self::ImageDownloadTimeout => "Timeout reached while downloading image",
            Self::ImageChecksum => "Error verifying image checksum",
            Self::ImageWrite => "Error writing image to device",
            Self::InvalidImage => "The provided image is not valid for use",
            Self::Deployment => "Deploy step failed",
            Self::Cleaning => "Clean step failed",
            Self::Servicing => "Service step failed",
            Self::BlockDeviceErase => "Error erasing block device",
            Self::ProtectedDevice => "Protected device located, cleaning aborted",
            Self::SystemReboot => "Error rebooting system",
            Self::IncompatibleHardwareMethod => {
                "HardwareManager method is not compatible with current hardware"
            }
            Self::TypeError => "Invalid arguments",
        }
    }
}

impl CommandError {
    /// An error of `kind` whose operator-facing text is `details`.
    pub fn new(kind: ErrorKind, details: impl Into<String>) -> Self {
        let mut details = details.into();
        if details.trim().is_empty() {
            // Never hand Ironic an empty last_error.
            details = kind.message().to_string();
        }
        Self {
            kind: kind.name().to_string(),
            code: kind.code(),
            message: kind.message().to_string(),
            details,
        }
    }

    pub fn kind_is(&self, kind: ErrorKind) -> bool {
        self.kind == kind.name()
    }
}

/// Conversion of a module's own error into the conductor's vocabulary.
pub trait IntoCommandError {
    fn into_command_error(self) -> CommandError;
}

impl IntoCommandError for CommandError {
    fn into_command_error(self) -> CommandError {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_ipa_rest_error() {
        let e = CommandError::new(
            ErrorKind::ImageChecksum,
            "checksum of disk.img did not match",
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "ImageChecksumError");
        assert_eq!(v["code"], 500);
        assert_eq!(v["message"], "Error verifying image checksum");
        assert_eq!(v["details"], "checksum of disk.img did not match");
    }

    #[test]
    fn empty_details_fall_back_to_the_summary() {
        let e = CommandError::new(ErrorKind::Cleaning, "  ");
        assert_eq!(e.details, "Clean step failed");
    }
}
