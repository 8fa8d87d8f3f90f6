//! A Responses request (`POST /v1/responses`) as the canonical chat request.
//!
//! The body is kept whole beside its translation (`Native`), so a deployment serving the
//! Responses API receives it as sent; what the chat wire cannot carry (hosted tools, item types
//! with no chat counterpart) is noted there and refused, or dropped under `drop_params`, only
//! once the deployment is known.

use crate::error::GatewayError;
use crate::types::{ChatRequest, Message, GATEWAY_FIELDS};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The client's Responses body and what of it has no chat-wire form.
#[derive(Debug, Default)]
pub struct Native {
    /// The body as the client sent it.
    pub body: Map<String, Value>,
    /// The first input item the chat wire cannot carry: (param, why).
    pub untranslatable: Option<(String, String)>,
    /// Types of the tools only a Responses server runs (`web_search`, `file_search`, MCP, ...).
    pub hosted_tools: Vec<String>,
}

/// One input item. Messages may omit `type` (the SDKs' "easy" message form).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item {
    Message(MessageItem),
    FunctionCall(FunctionCall),
    FunctionCallOutput(FunctionCallOutput),
    Reasoning(Reasoning),
}

#[derive(Deserialize)]
struct MessageItem {
    role: Role,
    content: Content,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Role {
    User,
    Assistant,
    System,
    Developer,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    InputText {
        text: String,
    },
    OutputText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    InputImage {
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    },
    InputFile {
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        file_data: Option<String>,
        #[serde(default)]
        filename: Option<String>,
        #[serde(default)]
        file_url: Option<String>,
    },
}

#[derive(Deserialize)]
struct FunctionCall {
    call_id: String,
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
struct FunctionCallOutput {
    call_id: String,
    output: Value,
}

#[derive(Deserialize)]
struct Reasoning {
    #[serde(default)]
    summary: Vec<TextOf>,
    #[serde(default)]
    content: Option<Vec<TextOf>>,
}

#[derive(Deserialize)]
struct TextOf {
    #[serde(default)]
    text: String,
}

/// Item types OpenAI defines that only a Responses server can act on.
const RESPONSES_ONLY_ITEMS: &[&str] = &[
    "item_reference",
    "web_search_call",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "code_interpreter_call",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "compaction",
];

fn param_err(param: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::invalid_param(param, format!("Invalid value for '{param}': {e}"))
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value, param: &str) -> Result<T, GatewayError> {
    T::deserialize(v).map_err(|e| param_err(param, e))
}

/// A Responses body as the canonical chat request (with the body kept as `native`).
pub fn to_canonical(body: Map<String, Value>) -> Result<ChatRequest, GatewayError> {
    let model = match body.get("model") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(param_err("model", "expected a string")),
        None => {
            return Err(GatewayError::invalid_param(
                "model",
                "Missing required parameter: 'model'.",
            ))
        }
    };
    let mut native = Native::default();
    let mut messages = Vec::new();
    match body.get("instructions") {
        Some(Value::String(s)) => messages.push(text_message("system", s)),
        None | Some(Value::Null) => {}
        Some(_) => return Err(param_err("instructions", "expected a string")),
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(text_message("user", s)),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, i, &mut messages, &mut native)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(param_err("input", "expected a string or an array of input items")),
    }
    // With the response store on, `api::responses_store::around` has already replaced a
    // `previous_response_id` by the stored conversation; with it off, the id stays for a
    // deployment serving Responses (`check_translatable`).
    let referenced = native.untranslatable.is_some() || body.get("previous_response_id").is_some_and(|v| !v.is_null());
    if messages.is_empty() && !referenced {
        return Err(GatewayError::invalid_param(
            "input",
            "Missing required parameter: 'input' (a string or a list of input items).",
        ));
    }
    let mut extra = Map::new();
    let stream = match body.get("stream") {
        Some(Value::Bool(b)) => Some(*b),
        None | Some(Value::Null) => None,
        Some(_) => return Err(param_err("stream", "expected a boolean")),
    };
    let max_tokens = match body.get("max_output_tokens") {
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| param_err("max_output_tokens", "expected a positive integer"))?,
        ),
        None | Some(Value::Null) => None,
        Some(_) => return Err(param_err("max_output_tokens", "expected an integer")),
    };
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        let Value::Array(tools) = tools else {
            return Err(param_err("tools", "expected an array"));
        };
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let kind = t.get("type").and_then(Value::as_str).ok_or_else(|| {
                GatewayError::invalid_param(
                    &format!("tools[{i}].type"),
                    "Missing required parameter: 'tools[{i}].type'.",
                )
            })?;
            if kind == "function" {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                    GatewayError::invalid_param(
                        &format!("tools[{i}].name"),
                        format!("Missing required parameter: 'tools[{i}].name'."),
                    )
                })?;
                let mut f = Map::new();
                f.insert("name".into(), name.into());
                for k in ["description", "parameters", "strict"] {
                    if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                        f.insert(k.into(), v.clone());
                    }
                }
                out.push(json!({"type": "function", "function": f}));
            } else {
                native.hosted_tools.push(kind.to_string());
            }
        }
        if !out.is_empty() {
            extra.insert("tools".into(), Value::Array(out));
        }
    }
    if let Some(tc) = body.get("tool_choice").filter(|v| !v.is_null()) {
        let choice = match tc {
            Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => tc.clone(),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}})
            }
            // Hosted-tool choices ({"type": "web_search"}, allowed_tools, ...) have no chat form.
            Value::Object(_) => json!("auto"),
            _ => {
                return Err(param_err(
                    "tool_choice",
                    "expected \"auto\", \"none\", \"required\" or a tool object",
                ))
            }
        };
        extra.insert("tool_choice".into(), choice);
    }
    for (k, want) in [
        ("parallel_tool_calls", "boolean"),
        ("temperature", "number"),
        ("top_p", "number"),
        ("user", "string"),
    ] {
        let Some(v) = body.get(k).filter(|v| !v.is_null()) else {
            continue;
        };
        let ok = match want {
            "boolean" => v.is_boolean(),
            "number" => v.is_number(),
            _ => v.is_string(),
        };
        if !ok {
            return Err(param_err(k, format!("expected a {want}")));
        }
        extra.insert(k.into(), v.clone());
    }
    if let Some(text) = body.get("text").filter(|v| !v.is_null()) {
        if let Some(format) = text.get("format").filter(|v| !v.is_null()) {
            match format.get("type").and_then(Value::as_str) {
                Some("json_schema") => {
                    let mut schema = Map::new();
                    for k in ["name", "schema", "description", "strict"] {
                        if let Some(v) = format.get(k).filter(|v| !v.is_null()) {
                            schema.insert(k.into(), v.clone());
                        }
                    }
                    extra.insert(
                        "response_format".into(),
                        json!({"type": "json_schema", "json_schema": schema}),
                    );
                }
                Some("json_object") => {
                    extra.insert("response_format".into(), json!({"type": "json_object"}));
                }
                Some("text") => {}
                _ => {
                    return Err(param_err(
                        "text.format.type",
                        "expected \"text\", \"json_schema\" or \"json_object\"",
                    ))
                }
            }
        }
    }
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| v.is_string())
    {
        extra.insert("reasoning_effort".into(), effort.clone());
    }
    // Gateway fields (fallbacks, num_retries, mock_response, metadata.tags, ...) steer the router
    // as on chat; everything else unknown is the Responses server's and stays in `native` only.
    // The body's few keys against the list, not a lookup in the body for each of the list's ~30.
    for (k, v) in body.iter().filter(|(k, _)| GATEWAY_FIELDS.contains(&k.as_str())) {
        extra.insert(k.clone(), v.clone());
    }
    native.body = body;
    Ok(ChatRequest {
        model,
        messages,
        stream,
        stream_options: None,
        max_tokens,
        max_completion_tokens: None,
        extra,
        native: Some(crate::types::Native::Responses(std::sync::Arc::new(native))),
    })
}

fn text_message(role: &str, text: &str) -> Message {
    Message {
        role: role.into(),
        content: Some(Value::String(text.to_string())),
        extra: Map::new(),
    }
}

fn input_item(item: &Value, i: usize, messages: &mut Vec<Message>, native: &mut Native) -> Result<(), GatewayError> {
    let param = format!("input[{i}]");
    let Value::Object(obj) = item else {
        return Err(param_err(&param, "expected an input item object"));
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None if obj.contains_key("role") => "message",
        None => {
            return Err(GatewayError::invalid_param(
                &format!("{param}.type"),
                format!("Missing required parameter: '{param}.type'."),
            ))
        }
        Some(_) => return Err(param_err(&format!("{param}.type"), "expected a string")),
    };
    if RESPONSES_ONLY_ITEMS.contains(&kind) {
        native.untranslatable.get_or_insert_with(|| {
            (
                format!("{param}.type"),
                format!("input items of type '{kind}' need a deployment serving the Responses API"),
            )
        });
        return Ok(());
    }
    let parsed: Item = if obj.contains_key("type") {
        typed(item, &param)?
    } else {
        Item::Message(typed(item, &param)?)
    };
    match parsed {
        Item::Message(m) => {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::System => "system",
                Role::Developer => "developer",
            };
            let content = match m.content {
                Content::Text(s) => Value::String(s),
                Content::Parts(parts) => {
                    parts_to_chat(&parts, &format!("{param}.content"), &mut native.untranslatable)?
                }
            };
            // Consecutive assistant pieces (text, then its tool calls) are one chat message.
            messages.push(Message {
                role: role.into(),
                content: Some(content),
                extra: Map::new(),
            });
        }
        Item::FunctionCall(c) => {
            let call =
                json!({"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}});
            // A call after an assistant turn (its text, or an earlier call) belongs to that turn.
            match messages.last_mut() {
                Some(last) if last.role == "assistant" => {
                    if let Some(Value::Array(calls)) = last.extra.get_mut("tool_calls") {
                        calls.push(call);
                    } else {
                        last.extra.insert("tool_calls".into(), json!([call]));
                    }
                }
                _ => messages.push(Message {
                    role: "assistant".into(),
                    content: None,
                    extra: Map::from_iter([("tool_calls".to_string(), json!([call]))]),
                }),
            }
        }
        Item::FunctionCallOutput(o) => {
            let content = match o.output {
                Value::String(s) => Value::String(s),
                Value::Array(parts) => parts_to_chat(&parts, &format!("{param}.output"), &mut native.untranslatable)?,
                _ => {
                    return Err(param_err(
                        &format!("{param}.output"),
                        "expected a string or an array of content parts",
                    ))
                }
            };
            messages.push(Message {
                role: "tool".into(),
                content: Some(content),
                extra: Map::from_iter([("tool_call_id".to_string(), Value::String(o.call_id))]),
            });
        }
        Item::Reasoning(r) => {
            // Carried as the next assistant message's `reasoning_content` (what chat engines and
            // the Anthropic translator read); an encrypted reasoning item has no text to carry.
            let text: Vec<String> = r
                .content
                .unwrap_or_default()
                .into_iter()
                .chain(r.summary)
                .map(|t| t.text)
                .filter(|t| !t.is_empty())
                .collect();
            if !text.is_empty() {
                messages.push(Message {
                    role: "assistant".into(),
                    content: None,
                    extra: Map::from_iter([("reasoning_content".to_string(), Value::String(text.join("\n")))]),
                });
            }
        }
    }
    merge_assistant_tail(messages);
    Ok(())
}

/// A reasoning-only assistant message followed by an assistant message becomes one message.
fn merge_assistant_tail(messages: &mut Vec<Message>) {
    let n = messages.len();
    if n < 2 {
        return;
    }
    let (a, b) = (&messages[n - 2], &messages[n - 1]);
    let reasoning_only =
        a.role == "assistant" && a.content.is_none() && a.extra.len() == 1 && a.extra.contains_key("reasoning_content");
    if reasoning_only && b.role == "assistant" && !b.extra.contains_key("reasoning_content") {
        let Some(mut b) = messages.pop() else { return };
        if let Some(a) = messages.last_mut() {
            if let Some(r) = a.extra.remove("reasoning_content") {
                b.extra.insert("reasoning_content".into(), r);
            }
            *a = b;
        }
    }
}

/// Responses content parts as chat content: plain text when every part is text, else chat parts.
fn parts_to_chat(
    parts: &[Value],
    param: &str,
    untranslatable: &mut Option<(String, String)>,
) -> Result<Value, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    let mut all_text = true;
    for (j, p) in parts.iter().enumerate() {
        let part: Part = typed(p, &format!("{param}[{j}]"))?;
        let chat = match part {
            Part::InputText { text } | Part::OutputText { text } => json!({"type": "text", "text": text}),
            Part::Refusal { refusal } => json!({"type": "text", "text": refusal}),
            Part::InputImage {
                image_url,
                file_id,
                detail,
            } => {
                all_text = false;
                let url = match (image_url, file_id) {
                    (Some(url), _) => url,
                    // An uploaded file is OpenAI's to resolve: no chat engine can fetch it.
                    (None, Some(_)) => {
                        untranslatable.get_or_insert_with(|| {
                            (
                                format!("{param}[{j}].file_id"),
                                "an input_image by file_id needs a deployment serving the Responses API".into(),
                            )
                        });
                        String::new()
                    }
                    (None, None) => {
                        return Err(GatewayError::invalid_param(
                            &format!("{param}[{j}].image_url"),
                            "input_image needs image_url or file_id",
                        ))
                    }
                };
                let mut img = json!({"url": url});
                if let Some(d) = detail {
                    img["detail"] = Value::String(d);
                }
                json!({"type": "image_url", "image_url": img})
            }
            Part::InputFile {
                file_id,
                file_data,
                filename,
                file_url,
            } => {
                all_text = false;
                let mut f = Map::new();
                for (k, v) in [
                    ("file_id", file_id),
                    ("file_data", file_data.or(file_url)),
                    ("filename", filename),
                ] {
                    if let Some(v) = v {
                        f.insert(k.into(), Value::String(v));
                    }
                }
                json!({"type": "file", "file": f})
            }
        };
        out.push(chat);
    }
    // Plain text where every part is text: what every chat engine takes, on any role.
    if all_text {
        let text: Vec<&str> = out
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return Ok(Value::String(text.concat()));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(v: Value) -> Result<ChatRequest, GatewayError> {
        let Value::Object(m) = v else { unreachable!() };
        to_canonical(m)
    }

    #[test]
    fn items_become_chat_messages() {
        let r = canon(json!({"model": "m", "instructions": "be brief", "input": [
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"role": "developer", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]}
        ], "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "web_search"}],
           "max_output_tokens": 9, "reasoning": {"effort": "low"}, "text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}))
        .unwrap();
        let roles: Vec<_> = r.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "developer"]);
        assert_eq!(r.messages[2].content, Some(json!("hello")));
        assert_eq!(r.messages[2].extra["tool_calls"][0]["id"], "c1");
        assert_eq!(r.messages[3].extra["tool_call_id"], "c1");
        assert_eq!(r.messages[4].content, Some(json!("ab")));
        assert_eq!(r.extra["tools"][0]["function"]["name"], "f");
        assert_eq!(r.extra["reasoning_effort"], "low");
        assert_eq!(r.extra["response_format"]["json_schema"]["name"], "x");
        assert_eq!(r.max_tokens, Some(9));
        let Some(crate::types::Native::Responses(n)) = &r.native else {
            panic!()
        };
        assert_eq!(n.hosted_tools, ["web_search"]);
    }

    #[test]
    fn bad_items_name_the_param() {
        let e = canon(json!({"model": "m", "input": [{"type": "bogus"}]})).unwrap_err();
        assert!(
            matches!(e, GatewayError::InvalidRequest { param: Some(ref p), .. } if p == "input[0]"),
            "{e:?}"
        );
        let e = canon(json!({"model": "m", "input": [{"role": "user", "content": 5}]})).unwrap_err();
        assert!(
            matches!(e, GatewayError::InvalidRequest { param: Some(ref p), .. } if p == "input[0]"),
            "{e:?}"
        );
        let e = canon(json!({"model": "m", "input": 3})).unwrap_err();
        assert!(
            matches!(e, GatewayError::InvalidRequest { param: Some(ref p), .. } if p == "input"),
            "{e:?}"
        );
        let r = canon(
            json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}, {"role": "user", "content": "q"}]}),
        )
        .unwrap();
        let Some(crate::types::Native::Responses(n)) = &r.native else {
            panic!()
        };
        assert_eq!(n.untranslatable.as_ref().map(|u| u.0.as_str()), Some("input[0].type"));
        let r = canon(json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]})).unwrap();
        let Some(crate::types::Native::Responses(n)) = &r.native else {
            panic!()
        };
        assert_eq!(
            n.untranslatable.as_ref().map(|u| u.0.as_str()),
            Some("input[0].content[0].file_id")
        );
    }
}
