//! The report crate's tests: the analysis pipeline's pure step
//! (`analysis/`: comparisons, decision rule, notices, quality, rows), and
//! rendering (`render/`: the two example trials on seeded synthetic rows
//! as snapshots, the HTML's self-containment and validity, each design's
//! choice of analysis, the refusal of a per-user test for community
//! designs, the feedback files).

#[path = "analysis/mod.rs"]
mod analysis;
#[path = "render/fixtures.rs"]
mod fixtures;
#[path = "render/mod.rs"]
mod render;
