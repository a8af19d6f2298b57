//! The archive (issue 20).

pub mod parquet;
