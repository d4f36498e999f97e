//! ironic-agent: a statically linked drop-in replacement for ironic-python-agent.
//!
//! Data flows one way through each path: kernel command line -> [`config`] -> agent;
//! bytes from the network -> [`image`] -> disk; conductor request -> API -> command -> step.

pub mod errors;
pub mod hardware;
pub mod image;
pub mod safety;

/// The agent's version, reported to Ironic as `agent_version`.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
