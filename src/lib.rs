//! switchyard: a local-first LLM gateway that speaks the OpenAI API and reads LiteLLM configs.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod error;
pub mod ledger;
pub mod limits;
pub mod mock;
pub mod pipeline;
pub mod providers;
pub mod routing;
pub mod server;
pub mod signals;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod thread;
pub mod translate;
pub mod types;
