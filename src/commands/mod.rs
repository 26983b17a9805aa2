//! The commands beside a batch run: they read (or trim) the store and the
//! catalogue, and share what they need with a run through [`crate::setup`].

pub mod cache;
pub mod config;
pub mod feedback;
pub mod keys;
pub mod models;
pub mod report;
