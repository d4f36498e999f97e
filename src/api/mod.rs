//! The agent's REST API (port 9999): routing, the agent-token check, TLS, and the command
//! registry and executor behind `/v1/commands/`.

pub mod executor;
pub mod registry;
pub mod routes;
pub mod server;

pub use executor::{CommandResult, Executor, Status};
pub use registry::{Mode, Params, Registry};
