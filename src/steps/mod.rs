//! Clean, deploy and service steps: the registry Ironic reads with `get_<kind>_steps`, and the
//! dispatch of `execute_<kind>_step` (contract §9).
//!
//! A step is listed only when it is implemented. Each step declares its interface, its default
//! priority for each kind it belongs to, whether it may be aborted, and its arguments.

pub mod clean_uefi_nvram;
pub mod configdrive;
pub mod erase;
pub mod inject_files;
pub mod node_caps;
pub mod partition_image;
pub mod write_image;

use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The kinds of steps Ironic runs through the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Clean,
    Deploy,
    Service,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Deploy => "deploy",
            Self::Service => "service",
        }
    }

    /// The error class a failure of this kind of step is reported as.
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Self::Clean => ErrorKind::Cleaning,
            Self::Deploy => ErrorKind::Deployment,
            Self::Service => ErrorKind::Servicing,
        }
    }
}

/// The hardware manager Ironic sees. IPA's generic manager's name and version are kept so
/// operators' step definitions and tooling keep working unchanged.
pub const MANAGER_CLASS: &str = "GenericHardwareManager";
pub const MANAGER_NAME: &str = "generic_hardware_manager";
pub const MANAGER_VERSION: &str = "1.2";

pub fn manager_versions() -> Value {
    json!({ MANAGER_NAME: MANAGER_VERSION })
}

/// What a step is called with.
#[derive(Debug, Clone)]
pub struct StepCall {
    pub kind: StepKind,
    /// The step dict as Ironic sent it (echoed back in the result).
    pub step: Value,
    pub node: Value,
    pub ports: Value,
    /// `step["args"]`.
    pub args: Map<String, Value>,
}

pub type StepFuture = Pin<Box<dyn Future<Output = Result<Value, CommandError>> + Send>>;
pub type StepFn = Arc<dyn Fn(Arc<AgentContext>, StepCall) -> StepFuture + Send + Sync>;

/// One step and where it appears. Built with [`StepSpec::new`] and the setters below, so a new
/// field (or a new step module) never touches the other steps' declarations.
#[derive(Clone)]
pub struct StepSpec {
    pub name: String,
    pub interface: String,
    pub clean_priority: Option<u32>,
    pub deploy_priority: Option<u32>,
    pub service_priority: Option<u32>,
    pub abortable: bool,
    /// Ironic reboots the node into the ramdisk again after the step (IPA's key).
    pub reboot_requested: bool,
    /// `{arg: {"description": ..., "required": bool}}`.
    pub argsinfo: Option<Value>,
    pub run: StepFn,
}

impl StepSpec {
    /// A step listed nowhere yet: give it a priority per kind it belongs to.
    pub fn new(name: impl Into<String>, interface: impl Into<String>, run: StepFn) -> Self {
        Self {
            name: name.into(),
            interface: interface.into(),
            clean_priority: None,
            deploy_priority: None,
            service_priority: None,
            abortable: false,
            reboot_requested: false,
            argsinfo: None,
            run,
        }
    }

    pub fn clean(mut self, priority: u32) -> Self {
        self.clean_priority = Some(priority);
        self
    }

    pub fn deploy(mut self, priority: u32) -> Self {
        self.deploy_priority = Some(priority);
        self
    }

    pub fn service(mut self, priority: u32) -> Self {
        self.service_priority = Some(priority);
        self
    }

    pub fn abortable(mut self, abortable: bool) -> Self {
        self.abortable = abortable;
        self
    }

    pub fn reboot_requested(mut self, reboot: bool) -> Self {
        self.reboot_requested = reboot;
        self
    }

    pub fn argsinfo(mut self, argsinfo: Value) -> Self {
        self.argsinfo = Some(argsinfo);
        self
    }

    pub fn priority(&self, kind: StepKind) -> Option<u32> {
        match kind {
            StepKind::Clean => self.clean_priority,
            StepKind::Deploy => self.deploy_priority,
            StepKind::Service => self.service_priority,
        }
    }

    /// The dict Ironic caches. Deploy steps carry no `abortable` key, as IPA's.
    fn describe(&self, kind: StepKind, priority: u32) -> Value {
        let mut m = Map::new();
        m.insert("step".into(), json!(self.name));
        m.insert("priority".into(), json!(priority));
        m.insert("interface".into(), json!(self.interface));
        m.insert("reboot_requested".into(), json!(self.reboot_requested));
        if kind != StepKind::Deploy {
            m.insert("abortable".into(), json!(self.abortable));
        }
        if let Some(a) = &self.argsinfo {
            m.insert("argsinfo".into(), a.clone());
        }
        Value::Object(m)
    }
}

/// Wraps an async step function as a [`StepFn`].
pub fn step_fn<F, Fut>(f: F) -> StepFn
where
    F: Fn(Arc<AgentContext>, StepCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
{
    Arc::new(move |ctx, call| Box::pin(f(ctx, call)))
}

/// All steps this agent implements.
#[derive(Clone, Default)]
pub struct StepRegistry {
    steps: Vec<StepSpec>,
}

impl StepRegistry {
    /// The steps, with priorities resolved from the configuration.
    pub fn new(config: &crate::config::Config) -> Self {
        let mut r = Self::default();
        r.register(
            StepSpec::new(
                "write_image",
                "deploy",
                step_fn(|ctx, call| write_image::run(ctx, call.args)),
            )
            .deploy(0)
            .service(0),
        );
        for spec in erase::specs() {
            r.register(spec);
        }
        r.register(
            StepSpec::new("clean_uefi_nvram", "deploy", step_fn(clean_uefi_nvram::run))
                .clean(0)
                .deploy(0)
                .abortable(true)
                .argsinfo(clean_uefi_nvram::argsinfo()),
        );
        // Off (priority 0) unless ipa-inject-files-priority or a deploy template enables it.
        r.register(
            StepSpec::new("inject_files", "deploy", step_fn(inject_files::run))
                .deploy(config.inject_files_priority)
                .service(config.inject_files_priority)
                .argsinfo(inject_files::argsinfo()),
        );
        r
    }

    pub fn register(&mut self, spec: StepSpec) {
        self.steps.retain(|s| s.name != spec.name);
        self.steps.push(spec);
    }

    /// The `get_<kind>_steps` result.
    pub fn list(&self, kind: StepKind) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .filter_map(|s| s.priority(kind).map(|p| s.describe(kind, p)))
            .collect();
        json!({
            format!("{}_steps", kind.name()): { MANAGER_CLASS: steps },
            "hardware_manager_version": manager_versions(),
        })
    }

    pub fn find(&self, kind: StepKind, name: &str) -> Option<&StepSpec> {
        self.steps
            .iter()
            .find(|s| s.name == name && s.priority(kind).is_some())
    }
}

/// Runs `execute_<kind>_step` (contract §9.2): version check, dispatch, result wrapping.
pub async fn execute(
    ctx: Arc<AgentContext>,
    kind: StepKind,
    params: Map<String, Value>,
) -> Result<Value, CommandError> {
    let node = params.get("node").cloned().unwrap_or(Value::Null);
    ctx.cache_node(&node);
    check_version(kind, params.get(&format!("{}_version", kind.name())))?;
    let step = params.get("step").cloned().unwrap_or(Value::Null);
    let name = step["step"].as_str().ok_or_else(|| {
        CommandError::new(
            kind.error_kind(),
            format!(
                "the {} step request names no step (missing \"step\" key)",
                kind.name()
            ),
        )
    })?;
    let spec = ctx.steps.find(kind, name).cloned().ok_or_else(|| {
        CommandError::new(
            ErrorKind::CommandExecution,
            format!(
                "{} step {name} is not implemented by this agent",
                kind.name()
            ),
        )
    })?;
    let args = match &step["args"] {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(CommandError::new(
                ErrorKind::InvalidCommandParams,
                format!(
                    "the args of {} step {name} must be an object, not {other}",
                    kind.name()
                ),
            ))
        }
    };
    let call = StepCall {
        kind,
        step: step.clone(),
        node,
        ports: params.get("ports").cloned().unwrap_or(json!([])),
        args,
    };
    tracing::info!("running {} step {name}", kind.name());
    let result = (spec.run)(ctx, call).await?;
    tracing::info!("{} step {name} finished", kind.name());
    Ok(json!({
        format!("{}_result", kind.name()): result,
        format!("{}_step", kind.name()): step,
    }))
}

/// Ironic sends back the versions it got with the step list; a different set means the agent
/// changed under it (contract §9.3).
fn check_version(kind: StepKind, sent: Option<&Value>) -> Result<(), CommandError> {
    match sent {
        None | Some(Value::Null) => Ok(()),
        Some(v) if *v == manager_versions() => Ok(()),
        Some(v) => Err(CommandError::new(
            ErrorKind::VersionMismatch,
            format!(
                "the {} step was planned for hardware managers {v}, but this agent has {}",
                kind.name(),
                manager_versions()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &'static str, clean: Option<u32>, deploy: Option<u32>) -> StepSpec {
        StepSpec {
            clean_priority: clean,
            deploy_priority: deploy,
            ..StepSpec::new(name, "deploy", step_fn(|_, _| async { Ok(Value::Null) }))
                .abortable(true)
        }
    }

    #[test]
    fn lists_steps_per_kind_in_ipa_shape() {
        let mut r = StepRegistry::default();
        r.register(spec("erase_devices_metadata", Some(99), Some(0)));
        r.register(spec("write_image", None, Some(0)));
        let clean = r.list(StepKind::Clean);
        assert_eq!(
            clean["hardware_manager_version"],
            json!({"generic_hardware_manager": "1.2"})
        );
        let steps = clean["clean_steps"]["GenericHardwareManager"]
            .as_array()
            .unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0],
            json!({"step": "erase_devices_metadata", "priority": 99, "interface": "deploy", "reboot_requested": false, "abortable": true})
        );
        let deploy = r.list(StepKind::Deploy);
        let steps = deploy["deploy_steps"]["GenericHardwareManager"]
            .as_array()
            .unwrap();
        assert_eq!(steps.len(), 2);
        assert!(steps.iter().all(|s| s.get("abortable").is_none()));
        assert!(r.find(StepKind::Clean, "write_image").is_none());
        assert!(r.find(StepKind::Deploy, "write_image").is_some());
    }

    #[test]
    fn version_mismatch_is_detected() {
        assert!(check_version(StepKind::Clean, None).is_ok());
        assert!(check_version(
            StepKind::Clean,
            Some(&json!({"generic_hardware_manager": "1.2"}))
        )
        .is_ok());
        let e = check_version(
            StepKind::Clean,
            Some(&json!({"generic_hardware_manager": "1.1"})),
        )
        .unwrap_err();
        assert_eq!(e.kind, "VersionMismatch");
        assert_eq!(e.code, 409);
    }
}
