//! The commands Ironic calls, one module per IPA extension (contract §8.1).

mod image;
mod log;
mod poll;
mod rescue;
mod standby;
mod steps;
mod system;

use crate::api::Registry;

/// The marker `rescue.finalize_rescue` leaves; a restarted agent idles when it exists.
pub const RESCUE_MARKER: &str = rescue::MARKER;

/// Every command this agent implements.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    steps::register(&mut r);
    poll::register(&mut r);
    standby::register(&mut r);
    log::register(&mut r);
    image::register(&mut r);
    system::register(&mut r);
    rescue::register(&mut r);
    r
}
