//! What switchyard knows about each provider prefix: the wire it speaks, where it lives by
//! default, and which environment variables hold its base URL and key (LiteLLM's names).

/// The providers switchyard can call. A closed set: adding one means adding a variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Azure,
    AzureAi,
    HostedVllm,
    TextCompletionOpenAi,
    Ollama,
    OllamaChat,
    HuggingFace,
    Gemini,
    DeepSeek,
    Groq,
    Mistral,
    TogetherAi,
    OpenRouter,
    FireworksAi,
    Xai,
    DashScope,
    LmStudio,
    Llamafile,
    NvidiaNim,
    Cerebras,
    Perplexity,
    LitellmProxy,
    Anthropic,
}

/// How requests are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `{base}/chat/completions` with `Authorization: Bearer`.
    OpenAi,
    /// `{base}/openai/deployments/{model}/...?api-version=` with `api-key`.
    Azure,
    /// Anthropic Messages API: `{base}/v1/messages` with `x-api-key` and `anthropic-version`.
    Anthropic,
}

pub struct Spec {
    pub prefix: &'static str,
    pub wire: Wire,
    pub default_base: Option<&'static str>,
    pub base_env: &'static [&'static str],
    pub key_env: &'static [&'static str],
    /// Calls without a key are refused upstream, so a deployment without one is disabled at load.
    pub key_required: bool,
    /// Local engines serve the OpenAI API under `/v1`; accept `api_base` with or without it.
    pub ensure_v1: bool,
}

const fn spec(
    prefix: &'static str,
    default_base: Option<&'static str>,
    base_env: &'static [&'static str],
    key_env: &'static [&'static str],
    key_required: bool,
    ensure_v1: bool,
) -> Spec {
    Spec {
        prefix,
        wire: Wire::OpenAi,
        default_base,
        base_env,
        key_env,
        key_required,
        ensure_v1,
    }
}

impl Provider {
    pub const ALL: &'static [Provider] = &[
        Provider::OpenAi,
        Provider::Azure,
        Provider::AzureAi,
        Provider::HostedVllm,
        Provider::TextCompletionOpenAi,
        Provider::Ollama,
        Provider::OllamaChat,
        Provider::HuggingFace,
        Provider::Gemini,
        Provider::DeepSeek,
        Provider::Groq,
        Provider::Mistral,
        Provider::TogetherAi,
        Provider::OpenRouter,
        Provider::FireworksAi,
        Provider::Xai,
        Provider::DashScope,
        Provider::LmStudio,
        Provider::Llamafile,
        Provider::NvidiaNim,
        Provider::Cerebras,
        Provider::Perplexity,
        Provider::LitellmProxy,
        Provider::Anthropic,
    ];

    pub fn spec(self) -> Spec {
        use Provider::*;
        const OPENAI_BASE: Option<&str> = Some("https://api.openai.com/v1");
        match self {
            OpenAi => spec(
                "openai",
                OPENAI_BASE,
                &["OPENAI_API_BASE", "OPENAI_BASE_URL"],
                &["OPENAI_API_KEY"],
                true,
                false,
            ),
            TextCompletionOpenAi => spec(
                "text-completion-openai",
                OPENAI_BASE,
                &["OPENAI_API_BASE", "OPENAI_BASE_URL"],
                &["OPENAI_API_KEY"],
                true,
                false,
            ),
            Azure => Spec {
                wire: Wire::Azure,
                ..spec("azure", None, &["AZURE_API_BASE"], &["AZURE_API_KEY"], true, false)
            },
            AzureAi => spec(
                "azure_ai",
                None,
                &["AZURE_AI_API_BASE"],
                &["AZURE_AI_API_KEY"],
                true,
                false,
            ),
            HostedVllm => spec(
                "hosted_vllm",
                None,
                &["HOSTED_VLLM_API_BASE"],
                &["HOSTED_VLLM_API_KEY"],
                false,
                true,
            ),
            Ollama => spec(
                "ollama",
                Some("http://localhost:11434/v1"),
                &["OLLAMA_API_BASE"],
                &["OLLAMA_API_KEY"],
                false,
                true,
            ),
            OllamaChat => spec(
                "ollama_chat",
                Some("http://localhost:11434/v1"),
                &["OLLAMA_API_BASE"],
                &["OLLAMA_API_KEY"],
                false,
                true,
            ),
            HuggingFace => spec(
                "huggingface",
                Some("https://router.huggingface.co/v1"),
                &["HUGGINGFACE_API_BASE", "HF_API_BASE"],
                &["HF_TOKEN", "HUGGINGFACE_API_KEY"],
                false,
                true,
            ),
            Gemini => spec(
                "gemini",
                Some("https://generativelanguage.googleapis.com/v1beta/openai"),
                &["GEMINI_API_BASE"],
                &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
                true,
                false,
            ),
            DeepSeek => spec(
                "deepseek",
                Some("https://api.deepseek.com/v1"),
                &["DEEPSEEK_API_BASE"],
                &["DEEPSEEK_API_KEY"],
                true,
                false,
            ),
            Groq => spec(
                "groq",
                Some("https://api.groq.com/openai/v1"),
                &["GROQ_API_BASE"],
                &["GROQ_API_KEY"],
                true,
                false,
            ),
            Mistral => spec(
                "mistral",
                Some("https://api.mistral.ai/v1"),
                &["MISTRAL_API_BASE"],
                &["MISTRAL_API_KEY"],
                true,
                false,
            ),
            TogetherAi => spec(
                "together_ai",
                Some("https://api.together.xyz/v1"),
                &["TOGETHER_AI_API_BASE", "TOGETHERAI_API_BASE"],
                &["TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHER_API_KEY"],
                true,
                false,
            ),
            OpenRouter => spec(
                "openrouter",
                Some("https://openrouter.ai/api/v1"),
                &["OPENROUTER_API_BASE"],
                &["OPENROUTER_API_KEY"],
                true,
                false,
            ),
            FireworksAi => spec(
                "fireworks_ai",
                Some("https://api.fireworks.ai/inference/v1"),
                &["FIREWORKS_AI_API_BASE", "FIREWORKS_API_BASE"],
                &["FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"],
                true,
                false,
            ),
            Xai => spec(
                "xai",
                Some("https://api.x.ai/v1"),
                &["XAI_API_BASE"],
                &["XAI_API_KEY"],
                true,
                false,
            ),
            DashScope => spec(
                "dashscope",
                Some("https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
                &["DASHSCOPE_API_BASE"],
                &["DASHSCOPE_API_KEY"],
                true,
                false,
            ),
            LmStudio => spec(
                "lm_studio",
                Some("http://localhost:1234/v1"),
                &["LM_STUDIO_API_BASE"],
                &["LM_STUDIO_API_KEY"],
                false,
                true,
            ),
            Llamafile => spec(
                "llamafile",
                Some("http://localhost:8080/v1"),
                &["LLAMAFILE_API_BASE"],
                &["LLAMAFILE_API_KEY"],
                false,
                true,
            ),
            NvidiaNim => spec(
                "nvidia_nim",
                Some("https://integrate.api.nvidia.com/v1"),
                &["NVIDIA_NIM_API_BASE"],
                &["NVIDIA_NIM_API_KEY"],
                true,
                false,
            ),
            Cerebras => spec(
                "cerebras",
                Some("https://api.cerebras.ai/v1"),
                &["CEREBRAS_API_BASE"],
                &["CEREBRAS_API_KEY"],
                true,
                false,
            ),
            Perplexity => spec(
                "perplexity",
                Some("https://api.perplexity.ai"),
                &["PERPLEXITY_API_BASE"],
                &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
                true,
                false,
            ),
            LitellmProxy => spec(
                "litellm_proxy",
                None,
                &["LITELLM_PROXY_API_BASE"],
                &["LITELLM_PROXY_API_KEY"],
                false,
                false,
            ),
            Anthropic => Spec {
                wire: Wire::Anthropic,
                ..spec(
                    "anthropic",
                    Some("https://api.anthropic.com"),
                    &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
                    &["ANTHROPIC_API_KEY"],
                    true,
                    false,
                )
            },
        }
    }

    pub fn from_prefix(prefix: &str) -> Option<Provider> {
        Provider::ALL.iter().copied().find(|p| p.spec().prefix == prefix)
    }

    pub fn prefix(self) -> &'static str {
        self.spec().prefix
    }

    /// Whether switchyard can send requests to this provider in this build.
    pub fn is_served(self) -> bool {
        true
    }
}

/// LiteLLM providers that a config may name but switchyard does not call (yet): such deployments
/// load, are reported, and stay out of rotation.
pub const KNOWN_UNSERVED: &[&str] = &[
    "bedrock",
    "bedrock_converse",
    "sagemaker",
    "vertex_ai",
    "vertex_ai_beta",
    "cohere",
    "cohere_chat",
    "databricks",
    "watsonx",
    "replicate",
    "vllm",
    "ai21",
    "voyage",
    "cloudflare",
    "predibase",
    "sambanova",
    "friendliai",
    "clarifai",
    "petals",
    "baseten",
    "oci",
    "snowflake",
    "github",
    "custom_openai",
    "docker_model_runner",
];

/// The provider LiteLLM would infer for a model id given without a prefix.
pub fn infer_provider(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    let starts = |ps: &[&str]| ps.iter().any(|p| m.starts_with(p));
    if m.starts_with("anthropic.")
        || m.contains(".anthropic.")
        || m.starts_with("amazon.")
        || m.starts_with("meta.llama")
    {
        return Some("bedrock");
    }
    if m.starts_with("claude") && m.contains('@') {
        return Some("vertex_ai");
    }
    if starts(&[
        "gpt-",
        "o1",
        "o3",
        "o4",
        "chatgpt-",
        "text-embedding-",
        "davinci",
        "babbage",
        "ft:",
        "dall-e",
        "whisper",
        "tts-",
        "omni-moderation",
        "text-moderation",
        "codex-",
    ]) {
        return Some("openai");
    }
    if starts(&["claude"]) {
        return Some("anthropic");
    }
    if starts(&["gemini-", "gemma-"]) {
        return Some("gemini");
    }
    if starts(&["deepseek-"]) {
        return Some("deepseek");
    }
    if starts(&[
        "mistral-",
        "codestral",
        "open-mistral",
        "open-mixtral",
        "ministral",
        "pixtral",
        "magistral",
    ]) {
        return Some("mistral");
    }
    if starts(&["grok-"]) {
        return Some("xai");
    }
    if starts(&["command-r", "command-"]) {
        return Some("cohere_chat");
    }
    if starts(&["qwen-", "qwq-"]) {
        return Some("dashscope");
    }
    None
}
