//! The Anthropic wire (`/v1/messages`). An Anthropic client's body passes through as sent (model
//! renamed, gateway fields removed, `max_tokens` clamped for a local deployment); any other
//! client's request is translated from the canonical form. Answers go back untouched to an
//! Anthropic client, translated to chat completions for an OpenAI one.

use super::{ByteStream, Prepared, WireFormat};
use crate::config::Deployment;
use crate::error::{Dialect, GatewayError};
use crate::pipeline::Call;
use crate::translate::{self, anthropic, responses};
use crate::types::Native;
use bytes::Bytes;

pub struct AnthropicWire;

impl WireFormat for AnthropicWire {
    fn prepare<'d>(&self, dep: &'d Deployment, call: &Call, dialect: Dialect) -> Result<Prepared<'d>, GatewayError> {
        if let Some(p) = super::responses_passthrough(dep, call)? {
            return Ok(p);
        }
        let body = match call {
            Call::Chat(r) => match (&r.native, dialect) {
                (Some(Native::Anthropic(n)), Dialect::Anthropic) => anthropic::wire::passthrough_body(dep, n)?,
                _ => anthropic::request_from_canonical(dep, r)?,
            },
            Call::Passthrough(e, _) => {
                return Err(GatewayError::invalid(format!(
                    "{} serves the Messages API only; {} is not available there",
                    dep.label(),
                    e.route()
                )))
            }
        };
        Ok(Prepared::Send {
            url: dep.chat_url.as_str().into(),
            body,
            forward_headers: true,
        })
    }

    fn answer(&self, dep: &Deployment, body: Bytes, call: &Call, dialect: Dialect) -> Result<Bytes, GatewayError> {
        match dialect {
            Dialect::Anthropic => Ok(body),
            _ if super::responses_passed_through(dep, call) => Ok(body),
            Dialect::OpenAi => anthropic::response_to_openai(&body),
            Dialect::Responses => super::chat_to_responses(&anthropic::response_to_openai(&body)?, call, call.model()),
        }
    }

    fn stream(&self, dep: &Deployment, upstream: ByteStream, call: &Call, dialect: Dialect) -> ByteStream {
        match dialect {
            // Relayed event by event as the upstream sent them.
            Dialect::Anthropic => upstream,
            _ if super::responses_passed_through(dep, call) => upstream,
            Dialect::OpenAi => {
                let usage = matches!(call, Call::Chat(r) if r.stream_options.as_ref().and_then(|o| o.include_usage) == Some(true));
                translate::stream(upstream, anthropic::AnthropicToOpenAi::new(usage))
            }
            Dialect::Responses => {
                let native = call.responses().cloned().unwrap_or_default();
                let to_responses = responses::stream::ChatToResponses::new(native, call.model(), None);
                translate::stream(
                    upstream,
                    responses::stream::Chain::new(anthropic::AnthropicToOpenAi::new(true), to_responses),
                )
            }
        }
    }
}
