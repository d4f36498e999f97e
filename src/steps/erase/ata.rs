//! ATA Security Erase through SCSI generic (SG_IO) ATA PASS-THROUGH(16), replacing IPA's
//! `hdparm -I` / `--security-set-pass` / `--security-erase[-enhanced]` (and its `smartctl`
//! check that raw ATA commands reach the drive).
//!
//! The decisions follow IPA's `_ata_erase` over the security states of ATA8-ACS:
//! * IDENTIFY DEVICE not accepted (not an ATA drive, or a bridge that drops pass-through), or
//!   the security feature set not supported: not erasable this way (`Ok(false)`).
//! * Frozen (SEC2/SEC6): an error.
//! * Locked (SEC4): try to unlock with the empty password (and the literal `NULL` older hdparm
//!   set); still locked: an error.
//! * Security not enabled (SEC1): set an empty user password (SEC5).
//! * SECURITY ERASE PREPARE + SECURITY ERASE UNIT, enhanced when supported. On failure, unlock
//!   so that a fallback overwrite can write the drive.
//! * Afterwards security must read "not enabled" again (the erase clears the password).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Duration;

const ATA_IDENTIFY: u8 = 0xec;
const ATA_SECURITY_SET_PASSWORD: u8 = 0xf1;
const ATA_SECURITY_UNLOCK: u8 = 0xf2;
const ATA_SECURITY_ERASE_PREPARE: u8 = 0xf3;
const ATA_SECURITY_ERASE_UNIT: u8 = 0xf4;
const ATA_SECURITY_DISABLE_PASSWORD: u8 = 0xf6;

/// Timeout for everything but the erase itself.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// For drives that do not estimate their erase time.
const UNKNOWN_ERASE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A user password: 32 bytes.
pub type Password = [u8; 32];

/// The empty password (what hdparm >= 9.51 sends for `NULL`).
pub const EMPTY_PASSWORD: Password = [0; 32];

/// The literal `NULL` older hdparm versions set.
pub fn literal_null() -> Password {
    let mut p = EMPTY_PASSWORD;
    p[..4].copy_from_slice(b"NULL");
    p
}

/// Why an ATA command did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtaError {
    /// The device does not take ATA commands (no SG_IO, not ATA, or the SATL rejects them).
    NotAta(String),
    /// The drive (or the transport) failed the command.
    Failed(String),
}

impl std::fmt::Display for AtaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAta(s) | Self::Failed(s) => f.write_str(s),
        }
    }
}

/// A security command and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    SetPassword(Password),
    Unlock(Password),
    ErasePrepare,
    EraseUnit { enhanced: bool, password: Password },
    DisablePassword(Password),
}

impl Security {
    fn name(&self) -> &'static str {
        match self {
            Self::SetPassword(_) => "SECURITY SET PASSWORD",
            Self::Unlock(_) => "SECURITY UNLOCK",
            Self::ErasePrepare => "SECURITY ERASE PREPARE",
            Self::EraseUnit { .. } => "SECURITY ERASE UNIT",
            Self::DisablePassword(_) => "SECURITY DISABLE PASSWORD",
        }
    }

    fn opcode(&self) -> u8 {
        match self {
            Self::SetPassword(_) => ATA_SECURITY_SET_PASSWORD,
            Self::Unlock(_) => ATA_SECURITY_UNLOCK,
            Self::ErasePrepare => ATA_SECURITY_ERASE_PREPARE,
            Self::EraseUnit { .. } => ATA_SECURITY_ERASE_UNIT,
            Self::DisablePassword(_) => ATA_SECURITY_DISABLE_PASSWORD,
        }
    }

    /// The 512-byte data block: control word (user password, high security; enhanced-erase
    /// bit for ERASE UNIT) then the password. `None` for non-data commands.
    fn data(&self) -> Option<[u8; 512]> {
        let (control, password) = match self {
            Self::ErasePrepare => return None,
            Self::SetPassword(p) | Self::Unlock(p) | Self::DisablePassword(p) => (0u16, p),
            Self::EraseUnit { enhanced, password } => (u16::from(*enhanced) << 1, password),
        };
        let mut block = [0u8; 512];
        block[..2].copy_from_slice(&control.to_le_bytes());
        block[2..34].copy_from_slice(password);
        Some(block)
    }
}

/// IDENTIFY DEVICE data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    words: [u16; 256],
}

impl Identify {
    pub fn parse(data: &[u8]) -> Result<Self, AtaError> {
        if data.len() < 512 {
            return Err(AtaError::Failed(
                "IDENTIFY DEVICE returned too little data".into(),
            ));
        }
        let mut words = [0u16; 256];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u16::from_le_bytes([data[2 * i], data[2 * i + 1]]);
        }
        if words[0] & 0x8000 != 0 {
            return Err(AtaError::NotAta(
                "the device is an ATAPI device, not an ATA disk".into(),
            ));
        }
        // Word 255: signature 0xA5 in the low byte, then a checksum over all 512 bytes.
        if words[255] & 0xff == 0xa5 && data[..512].iter().fold(0u8, |a, &b| a.wrapping_add(b)) != 0
        {
            return Err(AtaError::Failed(
                "IDENTIFY DEVICE data has a bad checksum".into(),
            ));
        }
        Ok(Self { words })
    }

    fn security(&self, bit: u16) -> bool {
        self.words[128] & (1 << bit) != 0
    }

    pub fn supported(&self) -> bool {
        self.security(0)
    }
    pub fn enabled(&self) -> bool {
        self.security(1)
    }
    pub fn locked(&self) -> bool {
        self.security(2)
    }
    pub fn frozen(&self) -> bool {
        self.security(3)
    }
    pub fn enhanced_erase(&self) -> bool {
        self.security(5)
    }

    /// The drive's estimate for a (enhanced) security erase, doubled, plus half an hour.
    pub fn erase_timeout(&self, enhanced: bool) -> Duration {
        let w = self.words[if enhanced { 90 } else { 89 }];
        // Bit 15 selects the extended format (bits 14:0); else bits 7:0, 255 meaning "more".
        let units = if w & 0x8000 != 0 {
            u64::from(w & 0x7fff)
        } else {
            u64::from(w & 0xff)
        };
        if units == 0 || (w & 0x8000 == 0 && units == 255) || units == 0x7fff {
            return UNKNOWN_ERASE_TIMEOUT;
        }
        Duration::from_secs(units * 2 * 60 * 2 + 30 * 60)
    }
}

/// Where ATA commands go (SG_IO in the agent, a script in tests).
pub trait AtaPort {
    fn identify(&mut self) -> Result<Identify, AtaError>;
    fn security(&mut self, cmd: Security, timeout: Duration) -> Result<(), AtaError>;
}

/// Runs IPA's ATA secure erase. `Ok(false)`: the drive cannot be erased this way, try another.
pub fn secure_erase(port: &mut dyn AtaPort, name: &str) -> Result<bool, String> {
    let id = match port.identify() {
        Ok(id) => id,
        Err(AtaError::NotAta(why)) => {
            tracing::info!("{name} does not take ATA security commands: {why}");
            return Ok(false);
        }
        Err(AtaError::Failed(why)) => {
            tracing::info!("IDENTIFY DEVICE failed on {name}, not using ATA secure erase: {why}");
            return Ok(false);
        }
    };
    if !id.supported() {
        tracing::info!("{name} does not support the ATA security feature set");
        return Ok(false);
    }
    if id.frozen() {
        return Err(format!(
            "Block device {name} is frozen and cannot be erased"
        ));
    }
    let id = if id.locked() { unlock(port, name)? } else { id };
    if id.locked() {
        return Err(format!(
            "Block device {name} already has a security password set"
        ));
    }
    if !id.enabled() {
        port.security(Security::SetPassword(EMPTY_PASSWORD), COMMAND_TIMEOUT)
            .map_err(|e| format!("Security password set failed for device {name}: {e}"))?;
    }
    let enhanced = id.enhanced_erase();
    tracing::info!(
        "ATA {}security erase of {name} starting (waiting up to {} min)",
        if enhanced { "enhanced " } else { "" },
        id.erase_timeout(enhanced).as_secs() / 60
    );
    let erased = port
        .security(Security::ErasePrepare, COMMAND_TIMEOUT)
        .and_then(|_| {
            port.security(
                Security::EraseUnit {
                    enhanced,
                    password: EMPTY_PASSWORD,
                },
                id.erase_timeout(enhanced),
            )
        });
    if let Err(e) = erased {
        // Leave the drive writable for a fallback overwrite.
        if let Ok(now) = port.identify() {
            if now.locked() {
                let _ = unlock(port, name);
            }
        }
        let _ = port.security(Security::DisablePassword(EMPTY_PASSWORD), COMMAND_TIMEOUT);
        return Err(format!("Erase failed for device {name}: {e}"));
    }
    let after = port
        .identify()
        .map_err(|e| format!("IDENTIFY DEVICE after erasing {name} failed: {e}"))?;
    if after.enabled() {
        return Err(format!(
            "An unknown error occurred erasing block device {name}: security is still enabled after the erase"
        ));
    }
    Ok(true)
}

/// Tries the empty and the literal `NULL` passwords; returns the state afterwards.
fn unlock(port: &mut dyn AtaPort, name: &str) -> Result<Identify, String> {
    for password in [EMPTY_PASSWORD, literal_null()] {
        if let Err(e) = port.security(Security::Unlock(password), COMMAND_TIMEOUT) {
            tracing::info!("security unlock of {name} failed: {e}");
        }
        let id = port
            .identify()
            .map_err(|e| format!("IDENTIFY DEVICE of {name} failed: {e}"))?;
        if !id.locked() {
            return Ok(id);
        }
    }
    port.identify()
        .map_err(|e| format!("IDENTIFY DEVICE of {name} failed: {e}"))
}

// ---- SG_IO transport ----------------------------------------------------------------------

const SG_DXFER_NONE: i32 = -1;
const SG_DXFER_TO_DEV: i32 = -2;
const SG_DXFER_FROM_DEV: i32 = -3;
const SENSE_LEN: usize = 32;

/// `struct sg_io_hdr` (scsi/sg.h).
#[repr(C)]
pub struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *mut u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

mod ioctl {
    nix::ioctl_readwrite_bad!(sg_io, 0x2285, super::SgIoHdr);
}

/// ATA PASS-THROUGH(16) for a command with at most one 512-byte block of PIO data.
/// Protocols: 3 non-data, 4 PIO data-in, 5 PIO data-out.
fn pass_through_cdb(command: u8, data: Option<bool>) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = 0x85;
    let (protocol, flags, count) = match data {
        None => (3u8, 0u8, 0u8),
        // T_DIR=1 (from device), BYT_BLOK=1, T_LENGTH=2 (count in the sector count field).
        Some(true) => (4, 0x0e, 1),
        Some(false) => (5, 0x06, 1),
    };
    cdb[1] = protocol << 1;
    cdb[2] = flags;
    cdb[6] = count;
    cdb[14] = command;
    cdb
}

/// What the sense data says about an ATA pass-through command.
fn judge_sense(sense: &[u8]) -> Result<(), AtaError> {
    if sense.len() < 8 {
        return Err(AtaError::Failed(
            "the command failed without sense data".into(),
        ));
    }
    let (key, asc, ascq, ata) = match sense[0] & 0x7f {
        0x72 | 0x73 => {
            // Descriptor format: look for the ATA Status Return descriptor (0x09).
            let mut ata = None;
            let mut i = 8;
            while i + 1 < sense.len() {
                let len = sense[i + 1] as usize + 2;
                if sense[i] == 0x09 && i + 13 < sense.len() {
                    ata = Some((sense[i + 13], sense[i + 3]));
                }
                i += len.max(2);
            }
            (sense[1] & 0xf, sense[2], sense[3], ata)
        }
        _ if sense.len() >= 14 => (
            sense[2] & 0xf,
            sense[12],
            sense[13],
            Some((sense[4], sense[3])),
        ),
        _ => {
            return Err(AtaError::Failed(
                "the command failed with short sense data".into(),
            ))
        }
    };
    let ata_ok = ata.is_none_or(|(status, _)| status & 0x21 == 0);
    match key {
        0x0 | 0x1 if ata_ok => Ok(()),
        // ILLEGAL REQUEST: the SCSI layer or bridge does not know ATA PASS-THROUGH.
        0x5 => Err(AtaError::NotAta(format!(
            "ATA PASS-THROUGH was rejected (sense key ILLEGAL REQUEST, ASC/ASCQ 0x{asc:02x}/0x{ascq:02x})"
        ))),
        _ => Err(AtaError::Failed(match ata {
            Some((status, error)) => format!(
                "the drive failed it (sense key 0x{key:x}, ATA status 0x{status:02x}, error 0x{error:02x}{})",
                if error & 0x04 != 0 { ": command aborted" } else { "" }
            ),
            None => format!("sense key 0x{key:x}, ASC/ASCQ 0x{asc:02x}/0x{ascq:02x}"),
        })),
    }
}

/// ATA commands to a disk through SG_IO.
pub struct SgIoPort {
    file: File,
}

impl SgIoPort {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        Ok(Self { file })
    }

    /// Sends one command; `data` is the buffer to fill (`Some(true)`) or to send.
    fn send(
        &mut self,
        command: u8,
        data: Option<(&mut [u8; 512], bool)>,
        timeout: Duration,
    ) -> Result<(), AtaError> {
        let mut sense = [0u8; SENSE_LEN];
        let dir_in = data.as_ref().map(|(_, input)| *input);
        let mut cdb = pass_through_cdb(command, dir_in);
        let (direction, ptr, len) = match data {
            None => (SG_DXFER_NONE, std::ptr::null_mut(), 0),
            Some((buf, true)) => (SG_DXFER_FROM_DEV, buf.as_mut_ptr().cast(), 512),
            Some((buf, false)) => (SG_DXFER_TO_DEV, buf.as_mut_ptr().cast(), 512),
        };
        let mut hdr = SgIoHdr {
            interface_id: i32::from(b'S'),
            dxfer_direction: direction,
            cmd_len: cdb.len() as u8,
            mx_sb_len: SENSE_LEN as u8,
            iovec_count: 0,
            dxfer_len: len,
            dxferp: ptr,
            cmdp: cdb.as_mut_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            flags: 0,
            pack_id: 0,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        };
        // SAFETY: every pointer in the header refers to a live buffer of the stated length
        // (cdb, sense, data) that outlives the call.
        if let Err(e) = unsafe { ioctl::sg_io(self.file.as_raw_fd(), &mut hdr) } {
            return Err(AtaError::NotAta(format!(
                "the device does not take SCSI pass-through commands (SG_IO: {e})"
            )));
        }
        if hdr.host_status != 0 {
            return Err(AtaError::Failed(format!(
                "the host adapter reported status 0x{:x}",
                hdr.host_status
            )));
        }
        if hdr.status == 0 && hdr.driver_status & 0x0f == 0 {
            return Ok(());
        }
        let written = (hdr.sb_len_wr as usize).min(SENSE_LEN);
        judge_sense(&sense[..written])
    }
}

impl AtaPort for SgIoPort {
    fn identify(&mut self) -> Result<Identify, AtaError> {
        let mut buf = [0u8; 512];
        self.send(ATA_IDENTIFY, Some((&mut buf, true)), COMMAND_TIMEOUT)?;
        Identify::parse(&buf)
    }

    fn security(&mut self, cmd: Security, timeout: Duration) -> Result<(), AtaError> {
        let r = match cmd.data() {
            Some(mut block) => self.send(cmd.opcode(), Some((&mut block, false)), timeout),
            None => self.send(cmd.opcode(), None, timeout),
        };
        r.map_err(|e| match e {
            AtaError::NotAta(s) => AtaError::NotAta(format!("{}: {s}", cmd.name())),
            AtaError::Failed(s) => AtaError::Failed(format!("{}: {s}", cmd.name())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted drive: a security state machine that records the commands it got.
    struct Drive {
        word128: u16,
        password_set: bool,
        fail_erase: bool,
        log: Vec<String>,
        not_ata: bool,
    }

    impl Drive {
        fn new(word128: u16) -> Self {
            Self {
                word128,
                password_set: word128 & 2 != 0,
                fail_erase: false,
                log: vec![],
                not_ata: false,
            }
        }
    }

    impl AtaPort for Drive {
        fn identify(&mut self) -> Result<Identify, AtaError> {
            if self.not_ata {
                return Err(AtaError::NotAta("SG_IO: ENOTTY".into()));
            }
            let mut data = [0u8; 512];
            data[256..258].copy_from_slice(&self.word128.to_le_bytes());
            data[178..180].copy_from_slice(&5u16.to_le_bytes()); // word 89: 10 minutes
            Identify::parse(&data)
        }

        fn security(&mut self, cmd: Security, _t: Duration) -> Result<(), AtaError> {
            self.log.push(cmd.name().to_string());
            match cmd {
                Security::SetPassword(_) => {
                    self.word128 |= 2;
                    self.password_set = true;
                }
                Security::Unlock(p) if p == EMPTY_PASSWORD => self.word128 &= !4,
                Security::Unlock(_) => {}
                Security::ErasePrepare => {}
                Security::EraseUnit { .. } if self.fail_erase => {
                    return Err(AtaError::Failed("aborted".into()))
                }
                Security::EraseUnit { .. } | Security::DisablePassword(_) => {
                    self.word128 &= !2;
                    self.password_set = false;
                }
            }
            Ok(())
        }
    }

    #[test]
    fn sec1_sets_a_password_then_erases_enhanced_when_supported() {
        let mut d = Drive::new(0x1 | 0x20);
        assert_eq!(secure_erase(&mut d, "/dev/sda"), Ok(true));
        assert_eq!(
            d.log,
            [
                "SECURITY SET PASSWORD",
                "SECURITY ERASE PREPARE",
                "SECURITY ERASE UNIT"
            ]
        );
    }

    #[test]
    fn unsupported_or_not_ata_means_try_something_else() {
        assert_eq!(secure_erase(&mut Drive::new(0), "/dev/sda"), Ok(false));
        let mut d = Drive::new(1);
        d.not_ata = true;
        assert_eq!(secure_erase(&mut d, "/dev/sda"), Ok(false));
    }

    #[test]
    fn frozen_drives_fail_with_ipas_message() {
        assert_eq!(
            secure_erase(&mut Drive::new(0x1 | 0x8), "/dev/sda"),
            Err("Block device /dev/sda is frozen and cannot be erased".into())
        );
    }

    #[test]
    fn locked_drives_are_unlocked_with_the_empty_password_first() {
        let mut d = Drive::new(0x1 | 0x2 | 0x4);
        assert_eq!(secure_erase(&mut d, "/dev/sdb"), Ok(true));
        assert_eq!(
            d.log,
            [
                "SECURITY UNLOCK",
                "SECURITY ERASE PREPARE",
                "SECURITY ERASE UNIT"
            ]
        );
    }

    #[test]
    fn a_failed_erase_is_reported_and_the_password_removed() {
        let mut d = Drive::new(0x1);
        d.fail_erase = true;
        let e = secure_erase(&mut d, "/dev/sdc").unwrap_err();
        assert_eq!(e, "Erase failed for device /dev/sdc: aborted");
        assert_eq!(d.log.last().unwrap(), "SECURITY DISABLE PASSWORD");
        assert!(!d.password_set);
    }

    #[test]
    fn identify_rejects_atapi_and_bad_checksums() {
        let mut data = [0u8; 512];
        data[1] = 0x80;
        assert!(matches!(Identify::parse(&data), Err(AtaError::NotAta(_))));
        let mut data = [0u8; 512];
        data[510] = 0xa5;
        data[511] = 0x00; // sum = 0xa5, not 0
        assert!(matches!(Identify::parse(&data), Err(AtaError::Failed(_))));
        data[511] = 0x5b; // 0xa5 + 0x5b = 0x100
        assert!(Identify::parse(&data).is_ok());
    }

    #[test]
    fn erase_timeouts_follow_the_drive_estimate() {
        let mut data = [0u8; 512];
        data[178] = 5; // normal: 10 min
        data[180..182].copy_from_slice(&(0x8000u16 | 100).to_le_bytes()); // enhanced: 200 min
        let id = Identify::parse(&data).unwrap();
        assert_eq!(id.erase_timeout(false), Duration::from_secs(50 * 60));
        assert_eq!(id.erase_timeout(true), Duration::from_secs(430 * 60));
        data[178] = 0;
        let id = Identify::parse(&data).unwrap();
        assert_eq!(id.erase_timeout(false), UNKNOWN_ERASE_TIMEOUT);
    }

    #[test]
    fn cdbs_and_data_blocks_are_well_formed() {
        assert_eq!(
            pass_through_cdb(ATA_IDENTIFY, Some(true)),
            [0x85, 8, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xec, 0]
        );
        assert_eq!(
            pass_through_cdb(ATA_SECURITY_ERASE_PREPARE, None)[1..3],
            [6, 0]
        );
        assert_eq!(
            pass_through_cdb(ATA_SECURITY_ERASE_UNIT, Some(false))[..3],
            [0x85, 10, 6]
        );
        let b = Security::EraseUnit {
            enhanced: true,
            password: literal_null(),
        }
        .data()
        .unwrap();
        assert_eq!(&b[..6], &[2, 0, b'N', b'U', b'L', b'L']);
        assert!(Security::ErasePrepare.data().is_none());
    }

    #[test]
    fn sense_data_is_judged() {
        // Descriptor sense, ILLEGAL REQUEST / invalid opcode: not an ATA path.
        let s = [0x72, 0x05, 0x20, 0x00, 0, 0, 0, 0];
        assert!(matches!(judge_sense(&s), Err(AtaError::NotAta(_))));
        // Descriptor sense with an ATA return descriptor: ABORTED COMMAND, status ERR, ABRT.
        let mut s = vec![0x72, 0x0b, 0x00, 0x00, 0, 0, 0, 14];
        s.extend_from_slice(&[0x09, 0x0c, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x51]);
        let e = judge_sense(&s).unwrap_err();
        assert_eq!(
            e,
            AtaError::Failed(
                "the drive failed it (sense key 0xb, ATA status 0x51, error 0x04: command aborted)"
                    .into()
            )
        );
        // Recovered error carrying a clean ATA status: success.
        let mut s = vec![0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 14];
        s.extend_from_slice(&[0x09, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50]);
        assert_eq!(judge_sense(&s), Ok(()));
        assert!(judge_sense(&[]).is_err());
    }

    #[test]
    fn a_regular_file_takes_no_ata_commands() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut port = SgIoPort::open(f.path()).unwrap();
        assert!(matches!(port.identify(), Err(AtaError::NotAta(_))));
        assert_eq!(secure_erase(&mut port, "/dev/sdz"), Ok(false));
    }
}
