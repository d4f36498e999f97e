//! What survives an agent restart within one boot: the agent token, the API certificate and the
//! command history, kept in a private directory under /run (tmpfs, gone at reboot).
//!
//! IPA loses all three when its process dies, and Ironic hands a token out only once: a crashed
//! IPA is stuck until the node is power-cycled. Keeping them here lets the supervised agent pick
//! up where it left off.

use crate::errors::{CommandError, ErrorKind};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The default state directory inside the ramdisk.
pub const DEFAULT_STATE_DIR: &str = "/run/ironic-agent";

/// The token Ironic issued, and the node it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub node_uuid: String,
    pub token: String,
}

/// A private directory holding the agent's durable state.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Opens (creating it with mode 0700 when needed) the state directory.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` as JSON, if it is there and readable.
    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        let data = std::fs::read(self.path.join(name)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// `value` as JSON into `name`, atomically and private.
    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let data = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        write_private(&self.path.join(name), &data)
    }

    pub fn load_token(&self) -> Option<StoredToken> {
        self.read_json("token.json")
    }

    pub fn save_token(&self, token: &StoredToken) {
        if let Err(e) = self.write_json("token.json", token) {
            tracing::warn!(
                "could not keep the agent token in {}: {e}; a restarted agent could not \
                            recover it",
                self.path.display()
            );
        }
    }

    /// The node UUID (if Ironic named one) from inspection data accepted earlier in this boot.
    pub fn load_inspection(&self) -> Option<InspectionRecord> {
        self.read_json("inspection.json")
    }

    pub fn save_inspection(&self, record: &InspectionRecord) {
        if let Err(e) = self.write_json("inspection.json", record) {
            tracing::warn!(
                "could not record the accepted inspection in {}: {e}; a restarted agent \
                 would post it again",
                self.path.display()
            );
        }
    }

    /// The command history of an earlier run of this agent in this boot. Commands that were still
    /// running when it died are reported as failed: their work stopped half-way.
    pub fn load_commands(&self) -> Vec<StoredCommand> {
        let Ok(data) = std::fs::read(self.path.join("commands.json")) else {
            return Vec::new();
        };
        let mut commands: Vec<StoredCommand> = match serde_json::from_slice(&data) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "ignoring the unreadable command history in {}: {e}",
                    self.path.display()
                );
                return Vec::new();
            }
        };
        for c in commands
            .iter_mut()
            .filter(|c| c.command_status == "RUNNING")
        {
            c.command_status = "FAILED".to_string();
            c.command_result = None;
            c.command_error = Some(CommandError::new(
                ErrorKind::CommandExecution,
                format!(
                    "the agent restarted while command {} was running; its work did not finish",
                    c.command_name
                ),
            ));
        }
        commands
    }

    pub fn save_commands(&self, commands: &[StoredCommand]) {
        if let Err(e) = self.write_json("commands.json", &commands) {
            tracing::warn!(
                "could not keep the command history in {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Inspection data Ironic accepted: a restarted agent does not post it again (the node has
/// moved on, and Ironic would refuse it with 404).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionRecord {
    pub node_uuid: Option<String>,
}

/// One command result as stored (the same fields Ironic sees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCommand {
    pub id: String,
    pub command_name: String,
    pub command_status: String,
    pub command_error: Option<CommandError>,
    pub command_result: Option<serde_json::Value>,
}

/// Writes `data` to `path` atomically (temporary file + rename) with mode 0600.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl<'de> Deserialize<'de> for CommandError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            code: u16,
            message: String,
            details: String,
        }
        let r = Raw::deserialize(d)?;
        Ok(CommandError {
            kind: r.kind,
            code: r.code,
            message: r.message,
            details: r.details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path().join("state")).unwrap();
        assert_eq!(s.load_token(), None);
        let t = StoredToken {
            node_uuid: "n1".into(),
            token: "t".repeat(43),
        };
        s.save_token(&t);
        assert_eq!(s.load_token(), Some(t));
        let meta = std::fs::metadata(s.path().join("token.json")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        let dmeta = std::fs::metadata(s.path()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&dmeta.permissions()) & 0o777,
            0o700
        );
    }

    #[test]
    fn accepted_inspection_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        assert_eq!(s.load_inspection(), None);
        let r = InspectionRecord {
            node_uuid: Some("n1".into()),
        };
        s.save_inspection(&r);
        assert_eq!(
            StateDir::open(dir.path()).unwrap().load_inspection(),
            Some(r)
        );
    }

    #[test]
    fn running_commands_of_a_dead_agent_become_failed() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        let running = StoredCommand {
            id: "1".into(),
            command_name: "execute_clean_step".into(),
            command_status: "RUNNING".into(),
            command_error: None,
            command_result: None,
        };
        let done = StoredCommand {
            id: "0".into(),
            command_status: "SUCCEEDED".into(),
            ..running.clone()
        };
        s.save_commands(&[done.clone(), running]);
        let loaded = s.load_commands();
        assert_eq!(loaded[0], done);
        assert_eq!(loaded[1].command_status, "FAILED");
        let err = loaded[1].command_error.as_ref().unwrap();
        assert_eq!(err.kind, "CommandExecutionError");
        assert!(err.details.contains("execute_clean_step"));
    }

    #[test]
    fn corrupt_history_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("commands.json"), b"{not json").unwrap();
        assert!(s.load_commands().is_empty());
    }
}
