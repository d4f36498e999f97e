//! `clean`, `deploy` and `service`: listing steps and running one (contract §9).

use crate::api::registry::{handler, CommandSpec, Mode, Registry, Signature};
use crate::steps::{self, StepKind};
use serde_json::Value;

const LIST: Signature = Signature {
    required: &["node", "ports"],
    optional: &[],
    open: false,
};

pub fn register(r: &mut Registry) {
    for kind in [StepKind::Clean, StepKind::Deploy, StepKind::Service] {
        let (ext, get, execute) = match kind {
            StepKind::Clean => ("clean", "get_clean_steps", "execute_clean_step"),
            StepKind::Deploy => ("deploy", "get_deploy_steps", "execute_deploy_step"),
            StepKind::Service => ("service", "get_service_steps", "execute_service_step"),
        };
        r.add(
            ext,
            get,
            CommandSpec {
                mode: Mode::Sync,
                signature: LIST,
                validator: None,
                handler: handler(move |ctx, params| async move {
                    ctx.cache_node(params.get("node").unwrap_or(&Value::Null));
                    Ok(ctx.steps.list(kind))
                }),
            },
        );
        r.add(
            ext,
            execute,
            CommandSpec {
                mode: Mode::Async,
                // IPA's signature takes **kwargs: Ironic adds fields over time.
                signature: Signature {
                    required: &["step", "node", "ports"],
                    optional: &[],
                    open: true,
                },
                validator: None,
                handler: handler(move |ctx, params| steps::execute(ctx, kind, params)),
            },
        );
    }
}
