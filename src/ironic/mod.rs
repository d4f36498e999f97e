//! Everything the agent says to Ironic (and to a legacy ironic-inspector): lookup, heartbeat and
//! inspection, over one failover-aware HTTP client.

pub mod client;
pub mod heartbeat;
pub mod inspection;
pub mod lookup;

pub use client::{IronicClient, IronicError};
