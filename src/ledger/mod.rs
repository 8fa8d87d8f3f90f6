//! What requests cost. The price table is here; spend records and budgets join it.

pub mod prices;
