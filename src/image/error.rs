//! What can go wrong while writing an image, and how each failure maps onto IPA's error classes.

use crate::errors::{CommandError, ErrorKind, IntoCommandError};
use std::path::PathBuf;

/// A failed image write. Each message is one sentence naming the operation and the object.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `image_info` (or the command line) is unusable: nothing was downloaded or written.
    #[error("invalid image parameters: {0}")]
    InvalidParams(String),
    /// A download failed in a way a later attempt may fix (connection refused, 5xx, stall).
    #[error("downloading {url} failed: {reason}")]
    Download { url: String, reason: String },
    /// The server said no in a way retrying cannot change (4xx).
    #[error("downloading {url} failed with HTTP status {status}, which is not retried")]
    DownloadFatal { url: String, status: u16 },
    /// The whole operation ran past `image_download_max_duration`.
    #[error("downloading {url} did not finish within the {seconds} s allowed by image_download_max_duration")]
    Timeout { url: String, seconds: u64 },
    /// The downloaded bytes do not hash to the expected value.
    #[error("checksum of {url} did not match: expected {algo} {expected}, computed {computed}")]
    Checksum {
        url: String,
        algo: &'static str,
        expected: String,
        computed: String,
    },
    /// The image's content is unsafe or unsupported (wrong format, backing file, corrupt qcow2).
    #[error("image {url} is not valid: {reason}")]
    InvalidImage { url: String, reason: String },
    /// The target could not be opened or written.
    #[error("writing the image to {} failed: {reason}", device.display())]
    Write { device: PathBuf, reason: String },
    /// The target is full (ENOSPC) or smaller than the image.
    #[error("the image does not fit on {}: {reason}", device.display())]
    OutOfSpace { device: PathBuf, reason: String },
}

impl ImageError {
    /// Whether IPA's whole-download retry loop would try again after this failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Download { .. } | Self::Checksum { .. })
    }

    /// The IPA error class this failure is reported as.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidParams(_) => ErrorKind::InvalidCommandParams,
            Self::Download { .. } => ErrorKind::ImageDownload,
            Self::DownloadFatal { .. } => ErrorKind::ImageDownloadFatal,
            Self::Timeout { .. } => ErrorKind::ImageDownloadTimeout,
            Self::Checksum { .. } => ErrorKind::ImageChecksum,
            Self::InvalidImage { .. } => ErrorKind::InvalidImage,
            Self::Write { .. } => ErrorKind::ImageWrite,
            Self::OutOfSpace { .. } => ErrorKind::ImageDownloadOutOfSpace,
        }
    }

    pub(crate) fn write(device: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Self::Write {
            device: device.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid(url: &str, reason: impl std::fmt::Display) -> Self {
        Self::InvalidImage {
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn download(url: &str, reason: impl std::fmt::Display) -> Self {
        Self::Download {
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl IntoCommandError for ImageError {
    fn into_command_error(self) -> CommandError {
        CommandError::new(self.kind(), self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_ipa_classes() {
        let e = ImageError::DownloadFatal {
            url: "http://x/img".into(),
            status: 404,
        };
        let c = e.into_command_error();
        assert_eq!(c.kind, "ImageDownloadFatalError");
        assert!(c.details.contains("http://x/img"));
        let e = ImageError::OutOfSpace {
            device: "/dev/sda".into(),
            reason: "no space left".into(),
        };
        assert!(e
            .into_command_error()
            .kind_is(ErrorKind::ImageDownloadOutOfSpace));
        assert!(ImageError::download("u", "r").is_retryable());
        assert!(!ImageError::invalid("u", "r").is_retryable());
    }
}
