//! ironic-agent: a statically linked drop-in replacement for ironic-python-agent.
//!
//! Data flows one way through each path: kernel command line -> [`config`] -> [`agent`];
//! bytes from the network -> [`image`] -> disk; conductor request -> [`api`] -> [`commands`] ->
//! [`steps`].

pub mod agent;
pub mod api;
pub mod collectors;
pub mod commands;
pub mod config;
pub mod context;
pub mod disk;
pub mod efi;
pub mod errors;
pub mod hardware;
pub mod image;
pub mod inspect;
pub mod ironic;
pub mod lockdown;
pub mod logs;
pub mod net;
pub mod ntp;
pub mod power;
pub mod safety;
pub mod state;
pub mod steps;
pub mod tls;
pub mod vlan;
pub mod vmedia;

/// The agent's version, reported to Ironic as `agent_version`.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
