//! `commonlab-stats` through its public interface, one module per area.

#[path = "calibration/mod.rs"]
mod calibration;
