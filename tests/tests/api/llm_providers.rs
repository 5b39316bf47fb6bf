//! The three LLM providers against fake servers speaking their real wire
//! formats: streaming, request shape, retries, failures and timeouts. No
//! database: each test starts only a fake provider.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use wayfinder::{
    config::Config,
    llm::{
        ChatRequest, LlmError, LlmMessage, LlmProvider, ProviderKind, ProviderSettings, Role,
        StreamEvent, Usage, build_provider, complete, settings_from_config,
    },
};

use crate::fake_llm::{Behaviour, FAKE_API_KEY, FakeLlm, json_reply};

/// Runs an `async fn(ProviderKind)` test once per provider.
macro_rules! for_each_provider {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use wayfinder::llm::ProviderKind;
            #[tokio::test]
            async fn ollama() {
                super::$name(ProviderKind::Ollama).await
            }
            #[tokio::test]
            async fn openai() {
                super::$name(ProviderKind::OpenAi).await
            }
            #[tokio::test]
            async fn anthropic() {
                super::$name(ProviderKind::Anthropic).await
            }
        }
    )+};
}

for_each_provider!(
    streams_deltas_in_order_then_usage,
    request_has_the_provider_shape,
    json_mode_reaches_the_wire,
    retries_429_then_succeeds,
    gives_up_after_max_retries,
    does_not_retry_400,
    garbage_is_a_bad_response,
    cut_stream_is_truncated_without_retry,
    broken_stream_after_text_is_not_retried,
    slow_first_token_times_out,
    slow_first_token_within_the_timeout_is_fine,
    hang_times_out_within_the_total_timeout,
    stall_after_first_chunk_times_out_within_the_idle_timeout,
    guarded_provider_refuses_loopback_unless_allowlisted,
    unreachable_provider_is_unavailable,
    oversized_answer_is_refused,
    api_key_never_in_error_text,
);

fn request() -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        system: "You are Wayfinder, a support assistant.".into(),
        messages: vec![
            LlmMessage {
                role: Role::User,
                content: "Hi".into(),
            },
            LlmMessage {
                role: Role::Assistant,
                content: "Hello! How can I help?".into(),
            },
            LlmMessage {
                role: Role::User,
                content: "Where do I change billing?".into(),
            },
        ],
        max_tokens: 300,
        temperature: 0.25,
        json: false,
    }
}

fn provider(settings: ProviderSettings) -> std::sync::Arc<dyn LlmProvider> {
    build_provider(settings).unwrap()
}

/// Every item of the stream, the final error included.
async fn collect(
    provider: &dyn LlmProvider,
    req: ChatRequest,
) -> Vec<Result<StreamEvent, LlmError>> {
    provider.stream(req).collect().await
}

fn delta(text: &str) -> StreamEvent {
    StreamEvent::Delta(text.into())
}

async fn streams_deltas_in_order_then_usage(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::reply(&["The ", "answer ", "is 42."], 17, 5));

    // Act
    let items = collect(fake.provider().as_ref(), request()).await;

    // Assert
    let events: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        events,
        vec![
            delta("The "),
            delta("answer "),
            delta("is 42."),
            StreamEvent::Done(Usage {
                prompt_tokens: 17,
                completion_tokens: 5
            }),
        ]
    );
    assert_eq!(fake.request_count(), 1);
    assert_eq!(fake.provider().name(), kind.as_str());
}

async fn request_has_the_provider_shape(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;

    // Act
    let completion = complete(fake.provider().as_ref(), request()).await.unwrap();

    // Assert
    assert_eq!(completion.text, "Hello world");
    let recorded = fake.recorded_requests();
    assert_eq!(recorded.len(), 1);
    let sent = &recorded[0];
    let body = &sent.body;
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    let conversation = json!([
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Where do I change billing?"},
    ]);
    let with_system = |conversation: &Value| {
        let mut messages =
            vec![json!({"role": "system", "content": "You are Wayfinder, a support assistant."})];
        messages.extend(conversation.as_array().unwrap().iter().cloned());
        Value::Array(messages)
    };
    let bearer = format!("Bearer {FAKE_API_KEY}");
    match kind {
        ProviderKind::Ollama => {
            assert_eq!(sent.path, "/api/chat");
            assert_eq!(sent.header("authorization"), Some(bearer.as_str()));
            assert_eq!(body["messages"], with_system(&conversation));
            assert_eq!(
                body["options"],
                json!({"temperature": 0.25, "num_predict": 300})
            );
            assert!(body.get("format").is_none(), "{body}");
        }
        ProviderKind::OpenAi => {
            assert_eq!(sent.path, "/v1/chat/completions");
            assert_eq!(sent.header("authorization"), Some(bearer.as_str()));
            assert_eq!(body["messages"], with_system(&conversation));
            assert_eq!(body["stream_options"], json!({"include_usage": true}));
            assert_eq!(body["max_tokens"], 300);
            assert_eq!(body["temperature"], 0.25);
            assert!(body.get("response_format").is_none(), "{body}");
        }
        ProviderKind::Anthropic => {
            assert_eq!(sent.path, "/v1/messages");
            assert_eq!(sent.header("x-api-key"), Some(FAKE_API_KEY));
            assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(sent.header("authorization"), None);
            assert_eq!(body["system"], "You are Wayfinder, a support assistant.");
            assert_eq!(body["messages"], conversation);
            assert_eq!(body["max_tokens"], 300);
            assert_eq!(body["temperature"], 0.25);
        }
    }
}

async fn json_mode_reaches_the_wire(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    let answer = json!({"articleIds": ["a1", "b2"], "confidence": 0.9});
    fake.set_behaviour(json_reply(answer.clone()));
    let mut req = request();
    req.system = "Pick the best article.".into();
    req.json = true;

    // Act
    let completion = complete(fake.provider().as_ref(), req).await.unwrap();

    // Assert
    assert_eq!(
        serde_json::from_str::<Value>(&completion.text).unwrap(),
        answer
    );
    let body = &fake.requests()[0];
    match kind {
        ProviderKind::Ollama => assert_eq!(body["format"], "json"),
        ProviderKind::OpenAi => {
            assert_eq!(body["response_format"], json!({"type": "json_object"}));
            // JSON mode is refused unless the prompt says "JSON".
            let system = body["messages"][0]["content"].as_str().unwrap();
            assert!(system.starts_with("Pick the best article."), "{system}");
            assert!(system.contains("JSON"), "{system}");
        }
        ProviderKind::Anthropic => {
            let system = body["system"].as_str().unwrap();
            assert!(system.starts_with("Pick the best article."), "{system}");
            assert!(system.contains("JSON"), "{system}");
        }
    }
}

async fn retries_429_then_succeeds(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::FailThenReply {
        failures: 1,
        status: 429,
        then: Box::new(Behaviour::reply(&["Fine", " now"], 8, 2)),
    });

    // Act
    let completion = complete(fake.provider().as_ref(), request()).await.unwrap();

    // Assert
    assert_eq!(completion.text, "Fine now");
    assert_eq!(
        completion.usage,
        Usage {
            prompt_tokens: 8,
            completion_tokens: 2
        }
    );
    assert_eq!(fake.request_count(), 2);
}

async fn gives_up_after_max_retries(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::FailThenReply {
        failures: 3,
        status: 500,
        then: Box::new(Behaviour::default()),
    });
    let settings = ProviderSettings {
        max_retries: 2,
        ..fake.settings()
    };

    // Act
    let result = complete(provider(settings).as_ref(), request()).await;

    // Assert
    assert!(matches!(result, Err(LlmError::Status(500))), "{result:?}");
    assert_eq!(fake.request_count(), 3, "one attempt and two retries");
}

async fn does_not_retry_400(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::Status(400));

    // Act
    let result = complete(fake.provider().as_ref(), request()).await;

    // Assert
    assert!(matches!(result, Err(LlmError::Status(400))), "{result:?}");
    assert_eq!(fake.request_count(), 1);
}

async fn garbage_is_a_bad_response(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::Garbage);

    // Act
    let result = complete(fake.provider().as_ref(), request()).await;

    // Assert
    assert!(
        matches!(result, Err(LlmError::BadResponse(_))),
        "{result:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

async fn cut_stream_is_truncated_without_retry(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::CutStream);

    // Act
    let mut items = collect(fake.provider().as_ref(), request()).await;

    // Assert: the text read so far arrives, then the error ends the stream.
    let last = items.pop().unwrap();
    assert!(matches!(last, Err(LlmError::Truncated)), "{last:?}");
    let events: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(events, vec![delta("Partial "), delta("answer")]);
    assert_eq!(fake.request_count(), 1);
}

async fn broken_stream_after_text_is_not_retried(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::BreakStream);

    // Act
    let mut items = collect(fake.provider().as_ref(), request()).await;

    // Assert: a connection failure is retryable, but not once text was streamed.
    let last = items.pop().unwrap();
    assert!(matches!(last, Err(LlmError::Unavailable(_))), "{last:?}");
    let events: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(events, vec![delta("Partial "), delta("answer")]);
    assert_eq!(fake.request_count(), 1);
}

async fn slow_first_token_times_out(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::SlowFirstToken(Duration::from_secs(5)));
    let settings = ProviderSettings {
        first_token_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(10),
        ..fake.settings()
    };

    // Act
    let started = Instant::now();
    let result = complete(provider(settings).as_ref(), request()).await;

    // Assert
    assert!(matches!(result, Err(LlmError::Timeout(_))), "{result:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(fake.request_count(), 1, "a timeout is not retried");
}

async fn slow_first_token_within_the_timeout_is_fine(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::SlowFirstToken(Duration::from_millis(150)));

    // Act
    let completion = complete(fake.provider().as_ref(), request()).await.unwrap();

    // Assert
    assert_eq!(completion.text, "Hello world");
    assert_eq!(completion.usage.completion_tokens, 2);
}

async fn hang_times_out_within_the_total_timeout(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::Hang);
    let settings = ProviderSettings {
        first_token_timeout: Duration::from_secs(30),
        total_timeout: Duration::from_millis(600),
        ..fake.settings()
    };

    // Act
    let started = Instant::now();
    let result = complete(provider(settings).as_ref(), request()).await;

    // Assert
    assert!(matches!(result, Err(LlmError::Timeout(_))), "{result:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(550), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

async fn stall_after_first_chunk_times_out_within_the_idle_timeout(kind: ProviderKind) {
    // Arrange: text at once, then silence; the total timeout is far away.
    let fake = FakeLlm::start(kind).await;
    fake.set_behaviour(Behaviour::StallAfterFirstChunk);
    let settings = ProviderSettings {
        first_token_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(400),
        total_timeout: Duration::from_secs(30),
        ..fake.settings()
    };

    // Act
    let started = Instant::now();
    let mut items = collect(provider(settings).as_ref(), request()).await;

    // Assert: the text, then a timeout about one idle period later, no retry.
    let elapsed = started.elapsed();
    let last = items.pop().unwrap();
    assert!(matches!(last, Err(LlmError::Timeout(_))), "{last:?}");
    assert!(last.unwrap_err().to_string().contains("idle"));
    let events: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(events, vec![delta("Partial ")]);
    assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(fake.request_count(), 1);
}

async fn guarded_provider_refuses_loopback_unless_allowlisted(kind: ProviderKind) {
    use wayfinder::outbound::Policy;
    let fake = FakeLlm::start(kind).await;
    let port = fake.allow_entry().rsplit_once(':').unwrap().1.to_owned();

    // An IP literal and a name that resolves to loopback: refused before
    // anything is sent, without retries.
    for base_url in [
        fake.base_url(),
        fake.base_url().replace("127.0.0.1", "localhost"),
    ] {
        let settings = ProviderSettings {
            base_url: base_url.clone(),
            guard: Some(Policy::default()),
            ..fake.settings()
        };
        let result = complete(provider(settings).as_ref(), request()).await;
        match result {
            Err(LlmError::Refused(why)) => {
                assert!(why.contains("loopback"), "{base_url}: {why}")
            }
            other => panic!("{base_url}: {other:?}"),
        }
    }
    assert_eq!(fake.request_count(), 0);

    // Allowlisted (host as written and port): reached.
    let settings = ProviderSettings {
        guard: Some(Policy::parse(Some(&format!("127.0.0.1:{port}")))),
        ..fake.settings()
    };
    let completion = complete(provider(settings).as_ref(), request())
        .await
        .unwrap();
    assert_eq!(completion.text, "Hello world");
    assert_eq!(fake.request_count(), 1);
}

async fn unreachable_provider_is_unavailable(kind: ProviderKind) {
    // Arrange: a port nobody listens on any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let settings = ProviderSettings {
        kind,
        base_url: format!("http://{addr}"),
        api_key: Some(FAKE_API_KEY.into()),
        connect_timeout: Duration::from_millis(500),
        first_token_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(2),
        max_retries: 1,
        guard: None,
    };

    // Act
    let result = complete(provider(settings).as_ref(), request()).await;

    // Assert
    assert!(
        matches!(result, Err(LlmError::Unavailable(_) | LlmError::Timeout(_))),
        "{result:?}"
    );
}

async fn oversized_answer_is_refused(kind: ProviderKind) {
    // Arrange: 1.2 MB of text, over the 1 MiB bound on one answer.
    let fake = FakeLlm::start(kind).await;
    let chunk = "x".repeat(200_000);
    let chunks: Vec<&str> = std::iter::repeat_n(chunk.as_str(), 6).collect();
    fake.set_behaviour(Behaviour::reply(&chunks, 1, 1));

    // Act
    let result = complete(fake.provider().as_ref(), request()).await;

    // Assert
    assert!(
        matches!(result, Err(LlmError::BadResponse(_))),
        "{result:?}"
    );
}

async fn api_key_never_in_error_text(kind: ProviderKind) {
    // Arrange
    let fake = FakeLlm::start(kind).await;
    let settings = ProviderSettings {
        first_token_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_millis(600),
        max_retries: 0,
        ..fake.settings()
    };
    let provider = provider(settings.clone());
    let behaviours = [
        Behaviour::Status(401),
        Behaviour::Status(500),
        Behaviour::Garbage,
        Behaviour::CutStream,
        Behaviour::BreakStream,
        Behaviour::Hang,
    ];

    for behaviour in behaviours {
        fake.set_behaviour(behaviour.clone());

        // Act
        let error = complete(provider.as_ref(), request()).await.unwrap_err();

        // Assert
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(FAKE_API_KEY), "{behaviour:?}: {text}");
        }
    }
    let debug = format!("{settings:?}");
    assert!(!debug.contains(FAKE_API_KEY), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn provider_kind_parses_case_insensitively() {
    assert_eq!(ProviderKind::parse("ollama"), Some(ProviderKind::Ollama));
    assert_eq!(ProviderKind::parse("OpenAI"), Some(ProviderKind::OpenAi));
    assert_eq!(
        ProviderKind::parse(" Anthropic "),
        Some(ProviderKind::Anthropic)
    );
    assert_eq!(ProviderKind::parse("gemini"), None);
    assert_eq!(ProviderKind::parse(""), None);
    assert_eq!(
        ProviderKind::Ollama.default_base_url(),
        "https://ollama.com"
    );
    assert_eq!(
        ProviderKind::OpenAi.default_base_url(),
        "https://api.openai.com/v1"
    );
    assert_eq!(
        ProviderKind::Anthropic.default_base_url(),
        "https://api.anthropic.com"
    );
}

fn config(provider: Option<&str>, key: Option<&str>, base: Option<&str>) -> Config {
    let mut config = Config::defaults();
    config.llm_provider = provider.map(str::to_owned);
    config.llm_api_key = key.map(str::to_owned);
    config.llm_base_url = base.map(str::to_owned);
    config
}

#[test]
fn settings_from_config_picks_the_provider() {
    // Nothing configured: no LLM (extractive answers).
    assert!(settings_from_config(&config(None, None, None)).is_none());
    assert!(settings_from_config(&config(Some("none"), Some("k"), None)).is_none());
    assert!(settings_from_config(&config(Some("gemini"), Some("k"), None)).is_none());

    // A key alone means Ollama Cloud.
    let cloud = settings_from_config(&config(None, Some("k-123"), None)).unwrap();
    assert_eq!(cloud.kind, ProviderKind::Ollama);
    assert_eq!(cloud.base_url, "https://ollama.com");
    assert_eq!(cloud.api_key.as_deref(), Some("k-123"));

    // Ollama without a key is a self-hosted one.
    let local = settings_from_config(&config(Some("ollama"), None, None)).unwrap();
    assert_eq!(local.base_url, "http://localhost:11434");
    assert_eq!(local.api_key, None);

    let openai = settings_from_config(&config(Some("OpenAI"), Some("sk"), None)).unwrap();
    assert_eq!(openai.kind, ProviderKind::OpenAi);
    assert_eq!(openai.base_url, "https://api.openai.com/v1");

    let compatible = settings_from_config(&config(
        Some("openai"),
        None,
        Some("http://vllm.internal:8000/v1/"),
    ))
    .unwrap();
    assert_eq!(compatible.base_url, "http://vllm.internal:8000/v1");

    let anthropic = settings_from_config(&config(Some("anthropic"), Some("sk-ant"), None)).unwrap();
    assert_eq!(anthropic.base_url, "https://api.anthropic.com");
    let defaults = Config::defaults();
    assert_eq!(
        anthropic.first_token_timeout,
        Duration::from_millis(defaults.llm_first_token_timeout_ms)
    );
    assert_eq!(anthropic.max_retries, defaults.llm_max_retries);
}

#[test]
fn every_llm_deadline_ends_before_the_request_timeout() {
    use wayfinder::llm::total_timeout;
    let mut config = Config::defaults();
    config.llm_provider = Some("openai".into());
    // Defaults: 45 s, under the 60 s request timeout less 5 s.
    assert_eq!(total_timeout(&config), Duration::from_secs(45));
    assert_eq!(
        settings_from_config(&config).unwrap().total_timeout,
        Duration::from_secs(45)
    );
    assert_eq!(
        settings_from_config(&config).unwrap().idle_timeout,
        Duration::from_millis(config.llm_idle_timeout_ms)
    );
    // A shorter request timeout wins, 5 s before it…
    config.request_timeout_secs = 20;
    assert_eq!(total_timeout(&config), Duration::from_secs(15));
    assert_eq!(
        settings_from_config(&config).unwrap().total_timeout,
        Duration::from_secs(15)
    );
    // …or halfway when it is too short for 5 s of margin.
    config.request_timeout_secs = 4;
    assert_eq!(total_timeout(&config), Duration::from_secs(2));
    // A shorter LLM total stays.
    config.request_timeout_secs = 60;
    config.llm_total_timeout_ms = 1_500;
    assert_eq!(total_timeout(&config), Duration::from_millis(1_500));
}

#[test]
fn build_provider_refuses_a_base_url_that_is_not_http() {
    for base_url in ["ftp://example.com", "not a url", ""] {
        let settings = ProviderSettings {
            kind: ProviderKind::OpenAi,
            base_url: base_url.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(1),
            first_token_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_retries: 0,
            guard: None,
        };
        assert!(
            matches!(build_provider(settings), Err(LlmError::Unavailable(_))),
            "{base_url}"
        );
    }
}
