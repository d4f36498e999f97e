//! The commands Ironic calls, one module per IPA extension (contract §8.1).

mod image;
mod log;
mod poll;
mod standby;
mod steps;

use crate::api::Registry;

/// Every command this agent implements.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    steps::register(&mut r);
    poll::register(&mut r);
    standby::register(&mut r);
    log::register(&mut r);
    image::register(&mut r);
    r
}
