//! Lab tools: the data generator (`socialnet fake`) and, later, the load benchmark.

pub mod fake;
pub mod names;
