//! The image pipeline: fetch -> sniff -> decode -> verify -> sink.
//!
//! SKELETON: filled in by the image-pipeline work.
pub mod cli;
