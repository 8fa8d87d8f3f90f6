//! What requests cost and where that is written: prices, metering, and the batched writer.

pub mod cost;
pub mod meter;
pub mod prices;
pub mod writer;
