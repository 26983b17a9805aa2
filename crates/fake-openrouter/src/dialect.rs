//! How OpenAI-compatible servers say they do not serve a model: the status
//! and body each answers a chat request naming a model it does not know,
//! as those servers send them.

/// A server whose "no such model" answer the fake can give, with
/// [`crate::Behavior::UnknownModel`]. `MODEL` below is the request's model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenRouter: 400,
    /// `{"error":{"message":"MODEL is not a valid model ID","code":400}}`.
    OpenRouter,
    /// LiteLLM's proxy: 400, its router's error text wrapped as a Python
    /// dict in `message`, `type` and `param` the string `"None"`, `code`
    /// the string `"400"`:
    /// `{"error":{"message":"{'error': '/chat/completions: Invalid model name
    /// passed in model=MODEL. Call `/v1/models` to view available models for
    /// your key.'}","type":"None","param":"None","code":"400"}}`.
    LiteLlm,
    /// vLLM's OpenAI-compatible server: 404, a top-level error object:
    /// `{"object":"error","message":"The model `MODEL` does not
    /// exist.","type":"NotFoundError","param":null,"code":404}`.
    Vllm,
    /// Ollama's OpenAI-compatible API: 404,
    /// `{"error":{"message":"model \"MODEL\" not found, try pulling it
    /// first","type":"api_error","param":null,"code":null}}`.
    Ollama,
    /// OpenAI: 404, `{"error":{"message":"The model `MODEL` does not exist or
    /// you do not have access to it.","type":"invalid_request_error",
    /// "param":null,"code":"model_not_found"}}`.
    OpenAi,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 5] = [
        Dialect::OpenRouter,
        Dialect::LiteLlm,
        Dialect::Vllm,
        Dialect::Ollama,
        Dialect::OpenAi,
    ];

    /// Its name on the command line: `openrouter`, `litellm`, `vllm`,
    /// `ollama`, `openai`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::OpenRouter => "openrouter",
            Dialect::LiteLlm => "litellm",
            Dialect::Vllm => "vllm",
            Dialect::Ollama => "ollama",
            Dialect::OpenAi => "openai",
        }
    }

    /// The dialect of this name (see [`Dialect::name`]).
    pub fn from_name(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The status and body this server answers a chat request for `model`,
    /// a model it does not serve.
    pub fn unknown_model(self, model: &str) -> (u16, String) {
        match self {
            Dialect::OpenRouter => (
                400,
                format!(
                    r#"{{"error":{{"message":{},"code":400}}}}"#,
                    quoted(&format!("{model} is not a valid model ID"))
                ),
            ),
            Dialect::LiteLlm => {
                let detail = format!(
                    "/chat/completions: Invalid model name passed in model={model}. \
                     Call `/v1/models` to view available models for your key."
                );
                let message = format!("{{'error': '{detail}'}}");
                (
                    400,
                    format!(
                        r#"{{"error":{{"message":{},"type":"None","param":"None","code":"400"}}}}"#,
                        quoted(&message)
                    ),
                )
            }
            Dialect::Vllm => (
                404,
                format!(
                    r#"{{"object":"error","message":{},"type":"NotFoundError","param":null,"code":404}}"#,
                    quoted(&format!("The model `{model}` does not exist."))
                ),
            ),
            Dialect::Ollama => (
                404,
                format!(
                    r#"{{"error":{{"message":{},"type":"api_error","param":null,"code":null}}}}"#,
                    quoted(&format!(
                        "model \"{model}\" not found, try pulling it first"
                    ))
                ),
            ),
            Dialect::OpenAi => (
                404,
                format!(
                    r#"{{"error":{{"message":{},"type":"invalid_request_error","param":null,"code":"model_not_found"}}}}"#,
                    quoted(&format!(
                        "The model `{model}` does not exist or you do not have access to it."
                    ))
                ),
            ),
        }
    }
}

/// `s` as a JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn every_dialect_answers_json_naming_the_model() {
        for d in Dialect::ALL {
            let (code, body) = d.unknown_model("x/\"y\"");
            assert!(code == 400 || code == 404, "{d:?}");
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{d:?}: {e}"));
            let message = v["error"]["message"]
                .as_str()
                .or(v["message"].as_str())
                .unwrap();
            assert!(message.contains("x/\"y\""), "{d:?}: {message}");
            assert_eq!(Dialect::from_name(d.name()), Some(d));
        }
        assert_eq!(Dialect::from_name("anthropic"), None);
    }

    #[test]
    fn the_bodies_are_those_the_servers_send() {
        let (_, body) = Dialect::LiteLlm.unknown_model("foo/bar");
        assert_eq!(
            body,
            "{\"error\":{\"message\":\"{'error': '/chat/completions: Invalid model name passed in \
             model=foo/bar. Call `/v1/models` to view available models for your key.'}\",\
             \"type\":\"None\",\"param\":\"None\",\"code\":\"400\"}}"
        );
        assert_eq!(
            Dialect::Vllm.unknown_model("foo"),
            (
                404,
                r#"{"object":"error","message":"The model `foo` does not exist.","type":"NotFoundError","param":null,"code":404}"#
                    .to_string()
            )
        );
        assert_eq!(
            Dialect::Ollama.unknown_model("foo").1,
            r#"{"error":{"message":"model \"foo\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#
        );
        assert_eq!(
            Dialect::OpenAi.unknown_model("foo").1,
            r#"{"error":{"message":"The model `foo` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#
        );
    }
}
