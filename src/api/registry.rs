//! The commands the agent answers, grouped by extension as IPA names them (`clean`, `deploy`,
//! `standby`, ...), with their parameters and whether they run synchronously.

use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type Params = Map<String, Value>;
pub type CommandFuture = Pin<Box<dyn Future<Output = Result<Value, CommandError>> + Send>>;
pub type Handler = Arc<dyn Fn(Arc<AgentContext>, Params) -> CommandFuture + Send + Sync>;
/// Checks parameters before an asynchronous command starts; failures are HTTP 400.
pub type Validator = fn(&AgentContext, &Params) -> Result<(), CommandError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs inside the request; the reply carries the result.
    Sync,
    /// Runs in the background; the reply says RUNNING and Ironic polls.
    Async,
}

/// The keyword arguments a command accepts, as IPA's Python signatures do.
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
    /// `**kwargs`: any other argument is accepted and ignored.
    pub open: bool,
}

impl Signature {
    pub const NONE: Signature = Signature {
        required: &[],
        optional: &[],
        open: false,
    };

    /// The argument error Python would raise, worded like it, or None when the call fits.
    pub fn check(&self, command: &str, params: &Params) -> Option<CommandError> {
        if let Some(missing) = self.required.iter().find(|r| !params.contains_key(**r)) {
            return Some(CommandError::new(
                ErrorKind::TypeError,
                format!("{command}() missing required argument '{missing}'"),
            ));
        }
        if self.open {
            return None;
        }
        let unexpected = params.keys().find(|k| {
            !self.required.contains(&k.as_str()) && !self.optional.contains(&k.as_str())
        })?;
        Some(CommandError::new(
            ErrorKind::TypeError,
            format!("{command}() got an unexpected keyword argument '{unexpected}'"),
        ))
    }
}

#[derive(Clone)]
pub struct CommandSpec {
    pub mode: Mode,
    pub signature: Signature,
    pub validator: Option<Validator>,
    pub handler: Handler,
}

/// Extension name -> command name -> spec.
#[derive(Clone, Default)]
pub struct Registry {
    extensions: BTreeMap<&'static str, BTreeMap<&'static str, CommandSpec>>,
}

impl Registry {
    pub fn add(&mut self, extension: &'static str, command: &'static str, spec: CommandSpec) {
        self.extensions
            .entry(extension)
            .or_default()
            .insert(command, spec);
    }

    pub fn has_extension(&self, extension: &str) -> bool {
        self.extensions.contains_key(extension)
    }

    pub fn get(&self, extension: &str, command: &str) -> Option<&CommandSpec> {
        self.extensions.get(extension)?.get(command)
    }
}

/// Wraps an async function as a handler.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Arc<AgentContext>, Params) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
{
    Arc::new(move |ctx, params| Box::pin(f(ctx, params)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Params {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn signatures_reject_like_python() {
        let sig = Signature {
            required: &["node", "ports"],
            optional: &[],
            open: false,
        };
        assert!(sig
            .check("get_clean_steps", &params(json!({"node": {}, "ports": []})))
            .is_none());
        let e = sig
            .check("get_clean_steps", &params(json!({"node": {}})))
            .unwrap();
        assert_eq!(e.kind, "TypeError");
        assert_eq!(
            e.details,
            "get_clean_steps() missing required argument 'ports'"
        );
        let e = sig
            .check(
                "get_clean_steps",
                &params(json!({"node": {}, "ports": [], "x": 1})),
            )
            .unwrap();
        assert_eq!(
            e.details,
            "get_clean_steps() got an unexpected keyword argument 'x'"
        );
        let open = Signature {
            required: &["step"],
            optional: &[],
            open: true,
        };
        assert!(open
            .check(
                "execute_clean_step",
                &params(json!({"step": {}, "extra": 1}))
            )
            .is_none());
    }
}
