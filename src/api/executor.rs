//! Running commands: one at a time, asynchronous ones off the request path, every result kept in
//! order (Ironic reads the *last* command and searches backwards by name, contract §7.3).

use super::registry::{Mode, Params, Registry};
use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind};
use crate::state::StoredCommand;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "RUNNING")]
    Running,
    #[serde(rename = "SUCCEEDED")]
    Succeeded,
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "CLEAN_VERSION_MISMATCH")]
    VersionMismatch,
}

impl Status {
    fn parse(s: &str) -> Self {
        match s {
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "CLEAN_VERSION_MISMATCH" => Self::VersionMismatch,
            _ => Self::Failed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::VersionMismatch => "CLEAN_VERSION_MISMATCH",
        }
    }
}

/// A command result exactly as IPA serialises it (field order included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandResult {
    pub id: String,
    /// The part after the dot (`execute_clean_step`).
    pub command_name: String,
    pub command_status: Status,
    pub command_error: Option<CommandError>,
    pub command_result: Option<Value>,
}

impl CommandResult {
    fn running(name: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            command_name: name.to_string(),
            command_status: Status::Running,
            command_error: None,
            command_result: None,
        }
    }

    fn finish(&mut self, mode: Mode, outcome: Result<Value, CommandError>) {
        match outcome {
            Ok(v) => {
                self.command_status = Status::Succeeded;
                self.command_result = Some(wrap_result(&self.command_name, mode, v));
            }
            Err(e) => {
                self.command_status = if e.kind_is(ErrorKind::VersionMismatch) {
                    Status::VersionMismatch
                } else {
                    Status::Failed
                };
                self.command_error = Some(e);
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.command_status != Status::Running
    }

    fn to_stored(&self) -> StoredCommand {
        StoredCommand {
            id: self.id.clone(),
            command_name: self.command_name.clone(),
            command_status: self.command_status.as_str().to_string(),
            command_error: self.command_error.clone(),
            command_result: self.command_result.clone(),
        }
    }

    fn from_stored(s: StoredCommand) -> Self {
        Self {
            id: s.id,
            command_name: s.command_name,
            command_status: Status::parse(&s.command_status),
            command_error: s.command_error,
            command_result: s.command_result,
        }
    }
}

/// IPA turns string results into objects: `{"result": s}`, prefixed with the command name for
/// asynchronous commands (`{"result": "prepare_image: image (x) written ..."}`).
fn wrap_result(command: &str, mode: Mode, v: Value) -> Value {
    match (v, mode) {
        (Value::String(s), Mode::Sync) => json!({ "result": s }),
        (Value::String(s), Mode::Async) => json!({ "result": format!("{command}: {s}") }),
        (other, _) => other,
    }
}

/// Why a command request was refused before it ran (an HTTP error, not a command result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub faultstring: String,
}

impl Refusal {
    fn from_error(e: &CommandError) -> Self {
        Self {
            status: e.code,
            faultstring: format!("{}: {}", e.message, e.details),
        }
    }
}

/// The command history and the machinery that runs commands.
pub struct Executor {
    registry: Registry,
    ctx: Arc<AgentContext>,
    history: Mutex<Vec<CommandResult>>,
    /// Serialises command starts (the busy check and the insertion must be atomic).
    start_lock: tokio::sync::Mutex<()>,
    changed: Notify,
}

impl Executor {
    /// An executor whose history continues the one an earlier run of this agent left behind.
    pub fn new(registry: Registry, ctx: Arc<AgentContext>) -> Arc<Self> {
        let history = ctx
            .state
            .load_commands()
            .into_iter()
            .map(CommandResult::from_stored)
            .collect();
        Arc::new(Self {
            registry,
            ctx,
            history: Mutex::new(history),
            start_lock: Default::default(),
            changed: Notify::new(),
        })
    }

    pub fn context(&self) -> &Arc<AgentContext> {
        &self.ctx
    }

    pub fn list(&self) -> Vec<CommandResult> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<CommandResult> {
        self.history
            .lock()
            .ok()?
            .iter()
            .find(|c| c.id == id)
            .cloned()
    }

    /// Waits until command `id` is no longer running.
    pub async fn wait(&self, id: &str) -> Option<CommandResult> {
        loop {
            let notified = self.changed.notified();
            let current = self.get(id)?;
            if current.is_done() {
                return Some(current);
            }
            notified.await;
        }
    }

    /// Starts (and for synchronous commands, completes) `name` with `params`.
    pub async fn execute(
        self: &Arc<Self>,
        name: &str,
        params: Params,
    ) -> Result<CommandResult, Refusal> {
        let _start = self.start_lock.lock().await;
        let (extension, command) = name.split_once('.').ok_or_else(|| {
            Refusal::from_error(&CommandError::new(
                ErrorKind::InvalidCommand,
                "Command name must be of the form <extension>.<name>",
            ))
        })?;
        if let Some(busy) = self.list().last().filter(|c| !c.is_done()) {
            tracing::warn!("refusing {name}: still executing {}", busy.command_name);
            return Err(Refusal::from_error(&CommandError::new(
                ErrorKind::AgentIsBusy,
                format!("executing command {}", busy.command_name),
            )));
        }
        if !self.registry.has_extension(extension) {
            return Err(Refusal::from_error(&CommandError::new(
                ErrorKind::RequestedObjectNotFound,
                format!("Extension with id {extension} not found."),
            )));
        }
        let spec = self
            .registry
            .get(extension, command)
            .cloned()
            .ok_or_else(|| {
                Refusal::from_error(&CommandError::new(
                    ErrorKind::InvalidCommand,
                    format!("Unknown command: {command}"),
                ))
            })?;
        if let Some(validate) = spec.validator {
            validate(&self.ctx, &params).map_err(|e| Refusal::from_error(&e))?;
        }
        tracing::info!("executing command {name}");
        let mut result = CommandResult::running(command);
        if let Some(e) = spec.signature.check(command, &params) {
            tracing::error!("command {name} failed: {}", e.details);
            result.finish(spec.mode, Err(e));
            self.record(result.clone());
            return Ok(result);
        }
        match spec.mode {
            Mode::Sync => {
                let outcome = (spec.handler)(self.ctx.clone(), params).await;
                log_outcome(name, &outcome);
                result.finish(Mode::Sync, outcome);
                self.record(result.clone());
            }
            Mode::Async => {
                self.record(result.clone());
                let this = self.clone();
                let (id, name) = (result.id.clone(), name.to_string());
                let fut = (spec.handler)(self.ctx.clone(), params);
                tokio::spawn(async move {
                    // A panic inside the command must still end it as FAILED, never RUNNING forever.
                    let outcome = tokio::spawn(fut).await.unwrap_or_else(|e| {
                        Err(CommandError::new(
                            ErrorKind::CommandExecution,
                            format!("command {name} crashed: {e}"),
                        ))
                    });
                    log_outcome(&name, &outcome);
                    this.complete(&id, outcome);
                });
            }
        }
        Ok(result)
    }

    fn record(&self, result: CommandResult) {
        if let Ok(mut h) = self.history.lock() {
            h.push(result);
        }
        self.persist_and_notify();
    }

    fn complete(&self, id: &str, outcome: Result<Value, CommandError>) {
        if let Ok(mut h) = self.history.lock() {
            if let Some(entry) = h.iter_mut().find(|c| c.id == id) {
                entry.finish(Mode::Async, outcome);
            }
        }
        self.persist_and_notify();
        self.ctx.force_heartbeat();
    }

    fn persist_and_notify(&self) {
        let stored: Vec<StoredCommand> = self.list().iter().map(CommandResult::to_stored).collect();
        self.ctx.state.save_commands(&stored);
        self.changed.notify_waiters();
    }
}

fn log_outcome(name: &str, outcome: &Result<Value, CommandError>) {
    match outcome {
        Ok(_) => tracing::info!("command {name} succeeded"),
        Err(e) => tracing::error!("command {name} failed: {} ({})", e.details, e.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_results_are_wrapped_like_ipa() {
        assert_eq!(
            wrap_result("sync", Mode::Sync, json!("done")),
            json!({"result": "done"})
        );
        assert_eq!(
            wrap_result("prepare_image", Mode::Async, json!("image written")),
            json!({"result": "prepare_image: image written"})
        );
        assert_eq!(wrap_result("x", Mode::Sync, Value::Null), Value::Null);
    }

    #[test]
    fn result_serialises_in_ipa_field_order() {
        let r = CommandResult::running("execute_clean_step");
        let s = serde_json::to_string(&r).unwrap();
        let keys: Vec<usize> = [
            "\"id\"",
            "\"command_name\"",
            "\"command_status\"",
            "\"command_error\"",
            "\"command_result\"",
        ]
        .iter()
        .map(|k| s.find(k).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{s}");
        assert!(s.contains("\"RUNNING\""));
    }

    #[test]
    fn version_mismatch_gets_its_own_status() {
        let mut r = CommandResult::running("execute_clean_step");
        r.finish(
            Mode::Async,
            Err(CommandError::new(ErrorKind::VersionMismatch, "x")),
        );
        assert_eq!(r.command_status, Status::VersionMismatch);
        assert_eq!(
            serde_json::to_value(r.command_status).unwrap(),
            "CLEAN_VERSION_MISMATCH"
        );
    }
}
