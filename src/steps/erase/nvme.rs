//! NVMe secure erase through the kernel's admin pass-through (`NVME_IOCTL_ADMIN_CMD`), the way
//! IPA runs `nvme id-ctrl` and `nvme format -s N -f`:
//!
//! * Identify Controller: OACS bit 1 says Format NVM is supported (else the device cannot be
//!   securely erased this way: an error, as in IPA); FNA bit 2 says cryptographic erase is.
//! * Identify Namespace: the current LBA format, metadata and protection settings, which the
//!   format keeps (nvme-cli's defaults).
//! * Format NVM with Secure Erase Setting 2 (cryptographic erase) when supported, else 1 (user
//!   data erase), then a partition-table re-read.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

const OPC_IDENTIFY: u8 = 0x06;
const OPC_FORMAT_NVM: u8 = 0x80;
const CNS_NAMESPACE: u32 = 0x00;
const CNS_CONTROLLER: u32 = 0x01;
/// OACS bit 1: Format NVM supported. FNA bit 2: cryptographic erase supported.
const OACS_FORMAT: u16 = 1 << 1;
const FNA_CRYPTO_ERASE: u8 = 1 << 2;
const IDENTIFY_LEN: usize = 4096;
/// Admin commands other than format: the kernel's usual admin timeout.
const ADMIN_TIMEOUT_MS: u32 = 60_000;
/// A format may take long on large drives (nvme-cli allows 10 minutes; we allow more rather
/// than reset a controller that is still erasing).
const FORMAT_TIMEOUT_MS: u32 = 3_600_000;

/// `struct nvme_passthru_cmd` (linux/nvme_ioctl.h), 72 bytes.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct NvmeAdminCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

mod ioctl {
    nix::ioctl_none!(nvme_ioctl_id, b'N', 0x40);
    nix::ioctl_readwrite!(nvme_admin_cmd, b'N', 0x41, super::NvmeAdminCmd);
}

/// The two Secure Erase Settings IPA uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureErase {
    /// SES=1.
    UserData,
    /// SES=2.
    Cryptographic,
}

impl SecureErase {
    fn ses(self) -> u32 {
        match self {
            Self::UserData => 1,
            Self::Cryptographic => 2,
        }
    }
}

/// The controller and namespace facts a format needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatPlan {
    pub mode: SecureErase,
    /// CDW10 of Format NVM.
    pub cdw10: u32,
}

/// Chooses the erase from Identify Controller and keeps the namespace's format from Identify
/// Namespace. `Err` names why the controller cannot format.
pub fn plan(id_ctrl: &[u8], id_ns: &[u8]) -> Result<FormatPlan, String> {
    if id_ctrl.len() < 525 || id_ns.len() < 30 {
        return Err("the identify data is truncated".into());
    }
    let oacs = u16::from_le_bytes([id_ctrl[256], id_ctrl[257]]);
    if oacs & OACS_FORMAT == 0 {
        return Err(format!(
            "the controller does not support the Format NVM command (OACS 0x{oacs:04x})"
        ));
    }
    let fna = id_ctrl[524];
    let mode = if fna & FNA_CRYPTO_ERASE != 0 {
        SecureErase::Cryptographic
    } else {
        SecureErase::UserData
    };
    // FLBAS: bits 3:0 format index (low), bit 4 extended metadata, bits 6:5 index (high).
    let flbas = u32::from(id_ns[26]);
    let (lbaf_lo, mset, lbaf_hi) = (flbas & 0xf, (flbas >> 4) & 1, (flbas >> 5) & 0x3);
    // DPS: bits 2:0 protection type, bit 3 protection information location.
    let dps = u32::from(id_ns[29]);
    let (pi, pil) = (dps & 0x7, (dps >> 3) & 1);
    let cdw10 =
        lbaf_lo | (mset << 4) | (pi << 5) | (pil << 8) | (mode.ses() << 9) | (lbaf_hi << 12);
    Ok(FormatPlan { mode, cdw10 })
}

/// Meaning of an NVMe completion status (Status Code Type and Status Code).
pub fn describe_status(status: u32) -> String {
    let sc = status & 0xff;
    let sct = (status >> 8) & 0x7;
    let text = match (sct, sc) {
        (0, 0x01) => "Invalid Command Opcode",
        (0, 0x02) => "Invalid Field in Command",
        (0, 0x03) => "Command ID Conflict",
        (0, 0x04) => "Data Transfer Error",
        (0, 0x05) => "Commands Aborted due to Power Loss Notification",
        (0, 0x06) => "Internal Error",
        (0, 0x07) => "Command Abort Requested",
        (0, 0x0b) => "Invalid Namespace or Format",
        (0, 0x0c) => "Command Sequence Error",
        (0, 0x1d) => "Sanitize In Progress",
        (0, 0x20) => "Namespace is Write Protected",
        (0, 0x21) => "Command Interrupted",
        (1, 0x0a) => "Invalid Format",
        (1, 0x15) => "Namespace Insufficient Capacity",
        (1, 0x1c) => "Format In Progress",
        (2, _) => "Media and Data Integrity Error",
        (3, _) => "Path Related Status",
        _ => "unknown status",
    };
    format!("0x{:x} ({text})", status & 0x7ff)
}

/// Why an admin command did not complete.
fn command_error(what: &str, r: nix::Result<libc::c_int>) -> Result<(), String> {
    match r {
        Ok(0) => Ok(()),
        Ok(status) => Err(format!(
            "NVMe {what} returned status {}",
            describe_status(status as u32)
        )),
        Err(e) => Err(format!("NVMe {what} could not be sent: {e}")),
    }
}

fn admin(file: &File, cmd: &mut NvmeAdminCmd) -> nix::Result<libc::c_int> {
    // SAFETY: the command struct matches the kernel's layout, and `addr`/`data_len` describe a
    // buffer owned by the caller that outlives the call.
    unsafe { ioctl::nvme_admin_cmd(file.as_raw_fd(), cmd) }
}

fn identify(file: &File, cns: u32, nsid: u32, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; IDENTIFY_LEN];
    let mut cmd = NvmeAdminCmd {
        opcode: OPC_IDENTIFY,
        nsid,
        addr: buf.as_mut_ptr() as u64,
        data_len: IDENTIFY_LEN as u32,
        cdw10: cns,
        timeout_ms: ADMIN_TIMEOUT_MS,
        ..NvmeAdminCmd::default()
    };
    command_error(what, admin(file, &mut cmd))?;
    Ok(buf)
}

/// Formats the namespace at `path` with the most secure erase it supports; returns the erase
/// used. Errors are sentences naming the command that failed.
pub fn secure_format(path: &Path) -> Result<SecureErase, String> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open it: {e}"))?;
    // SAFETY: NVME_IOCTL_ID takes no argument and returns the namespace id.
    let nsid = unsafe { ioctl::nvme_ioctl_id(file.as_raw_fd()) }
        .map_err(|e| format!("it is not an NVMe namespace (NVME_IOCTL_ID failed: {e})"))?;
    let nsid = u32::try_from(nsid).map_err(|_| format!("invalid namespace id {nsid}"))?;
    let ctrl = identify(&file, CNS_CONTROLLER, 0, "Identify Controller")?;
    let ns = identify(&file, CNS_NAMESPACE, nsid, "Identify Namespace")?;
    let plan = plan(&ctrl, &ns)?;
    tracing::info!(
        "formatting NVMe namespace {nsid} at {} with {:?} secure erase (SES={})",
        path.display(),
        plan.mode,
        plan.mode.ses()
    );
    let mut cmd = NvmeAdminCmd {
        opcode: OPC_FORMAT_NVM,
        nsid,
        cdw10: plan.cdw10,
        timeout_ms: FORMAT_TIMEOUT_MS,
        ..NvmeAdminCmd::default()
    };
    command_error("Format NVM", admin(&file, &mut cmd))?;
    // The namespace's contents (and partition table) are gone: let the kernel see that.
    let dev = super::blockdev::Device::open(path);
    if let Err(e) = dev.and_then(|d| d.reread_partitions()) {
        tracing::warn!(
            "re-reading the partition table of {} after the format failed: {e}",
            path.display()
        );
    }
    Ok(plan.mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctrl(oacs: u16, fna: u8) -> Vec<u8> {
        let mut c = vec![0u8; IDENTIFY_LEN];
        c[256..258].copy_from_slice(&oacs.to_le_bytes());
        c[524] = fna;
        c
    }

    #[test]
    fn the_command_struct_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<NvmeAdminCmd>(), 72);
    }

    #[test]
    fn crypto_erase_when_fna_says_so_else_user_data() {
        let ns = vec![0u8; IDENTIFY_LEN];
        let p = plan(&ctrl(0x2, 0x4), &ns).unwrap();
        assert_eq!(p.mode, SecureErase::Cryptographic);
        assert_eq!(p.cdw10, 2 << 9);
        let p = plan(&ctrl(0x17, 0x3), &ns).unwrap();
        assert_eq!(p.mode, SecureErase::UserData);
        assert_eq!(p.cdw10, 1 << 9);
    }

    #[test]
    fn the_current_lba_format_and_protection_are_kept() {
        let mut ns = vec![0u8; IDENTIFY_LEN];
        ns[26] = 0x12 | (1 << 5); // format index 2 (+16 from the high bits), extended metadata
        ns[29] = 0x9; // PI type 1, at the start of metadata
        let p = plan(&ctrl(0x2, 0), &ns).unwrap();
        assert_eq!(
            p.cdw10,
            2 | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 12)
        );
    }

    #[test]
    fn controllers_without_format_are_refused_with_the_reason() {
        let e = plan(&ctrl(0x5, 0x4), &vec![0u8; IDENTIFY_LEN]).unwrap_err();
        assert_eq!(
            e,
            "the controller does not support the Format NVM command (OACS 0x0005)"
        );
        assert!(plan(&[0u8; 10], &[0u8; 10]).is_err());
    }

    #[test]
    fn statuses_read_like_the_spec() {
        assert_eq!(describe_status(0x2), "0x2 (Invalid Field in Command)");
        assert_eq!(describe_status(0x4002), "0x2 (Invalid Field in Command)");
        assert_eq!(describe_status(0x10a), "0x10a (Invalid Format)");
        assert_eq!(
            command_error("Format NVM", Ok(0x2)).unwrap_err(),
            "NVMe Format NVM returned status 0x2 (Invalid Field in Command)"
        );
        assert!(
            command_error("Identify Controller", Err(nix::errno::Errno::ENOTTY))
                .unwrap_err()
                .starts_with("NVMe Identify Controller could not be sent")
        );
    }

    #[test]
    fn a_regular_file_is_not_a_namespace() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = secure_format(f.path()).unwrap_err();
        assert!(e.starts_with("it is not an NVMe namespace"), "{e}");
    }
}
