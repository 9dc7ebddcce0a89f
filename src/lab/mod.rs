//! Lab tools: the data generator (`socialnet fake`) and the load benchmark (`socialnet bench`).

pub mod bench;
pub mod dialogs;
pub mod fake;
pub mod names;
pub mod social;
