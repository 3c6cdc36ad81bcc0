//! The report crate's tests: rendering the two example trials on seeded
//! synthetic rows (snapshots), the HTML's self-containment and validity,
//! each design's choice of analysis, and the refusal of a per-user test
//! for community designs.

#[path = "render/fixtures.rs"]
mod fixtures;
#[path = "render/mod.rs"]
mod render;
