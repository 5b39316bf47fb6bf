//! The `graphql-transport-ws` messages, as the graphql-ws project's
//! PROTOCOL.md specifies them: what a client may send (parsed and validated
//! here, so the connection loop only sees well-formed messages), what the
//! server sends, and the close codes. No I/O: the connection loop in the
//! parent module owns the socket.

use async_graphql::{Response, ServerError};
use serde::Serialize;
use serde_json::{Map, Value as Json};

/// Close codes of the protocol, and the two generic ones used besides.
pub(super) mod close_code {
    /// A message that is not valid JSON, not an object, or not a protocol message.
    pub const BAD_REQUEST: u16 = 4400;
    /// `subscribe` before the connection was acknowledged.
    pub const UNAUTHORIZED: u16 = 4401;
    /// `connection_init` rejected (wrong API key).
    pub const FORBIDDEN: u16 = 4403;
    /// The client did not offer `graphql-transport-ws`.
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    /// No `connection_init` within the configured wait.
    pub const INIT_TIMEOUT: u16 = 4408;
    /// `subscribe` with the id of an operation still running.
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    /// A second `connection_init`.
    pub const TOO_MANY_INITS: u16 = 4429;
    /// A frame or message over the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server failed (the database, while checking the API key).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Nothing ran on the socket for the idle timeout.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client sent messages faster than its rate budget allows.
    pub const POLICY_VIOLATION: u16 = 1008;
}

/// Longest close reason a close frame can carry (125 bytes minus the code).
pub(super) const MAX_CLOSE_REASON: usize = 123;

/// `s` cut to at most `max` bytes, on a character boundary.
pub(super) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Messages the server sends.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ServerMessage<'a> {
    ConnectionAck,
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a Map<String, Json>>,
    },
    Next {
        id: &'a str,
        payload: &'a Response,
    },
    Error {
        id: &'a str,
        payload: &'a [ServerError],
    },
    Complete {
        id: &'a str,
    },
}

/// `message` as JSON text. Serialising these types cannot fail in practice;
/// if it ever does, the client gets a well-formed message saying so.
pub(super) fn encode(message: &ServerMessage<'_>) -> String {
    match serde_json::to_string(message) {
        Ok(text) => text,
        Err(err) => {
            tracing::error!(%err, "graphql-ws message could not be serialised");
            let error = ServerError::new("internal error", None);
            let fallback = match message {
                ServerMessage::Next { id, .. } | ServerMessage::Error { id, .. } => {
                    ServerMessage::Error {
                        id,
                        payload: std::slice::from_ref(&error),
                    }
                }
                _ => ServerMessage::ConnectionAck,
            };
            serde_json::to_string(&fallback).unwrap_or_default()
        }
    }
}

/// The payload of `subscribe`.
#[derive(Debug)]
pub(super) struct SubscribePayload {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Json>>,
    pub extensions: Option<Map<String, Json>>,
}

/// Messages a client may send.
#[derive(Debug)]
pub(super) enum ClientMessage {
    ConnectionInit {
        payload: Option<Map<String, Json>>,
    },
    Ping {
        payload: Option<Map<String, Json>>,
    },
    Pong,
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
}

impl ClientMessage {
    /// Parses and validates one message; `Err` is the close reason.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let value: Json = serde_json::from_str(text)
            .map_err(|_| "Invalid message received: not valid JSON".to_string())?;
        let Json::Object(mut message) = value else {
            return Err(format!(
                "Message is expected to be an object, but got {}",
                kind(&value)
            ));
        };
        let ty = match message.get("type") {
            Some(Json::String(ty)) if !ty.is_empty() => ty.clone(),
            None | Some(Json::Null) => {
                return Err("Message is missing the 'type' property".into());
            }
            Some(other) => {
                return Err(format!(
                    "Message expects the 'type' property to be a non-empty string, but got {}",
                    kind(other)
                ));
            }
        };
        let payload = message.remove("payload");
        match ty.as_str() {
            "connection_init" => Ok(Self::ConnectionInit {
                payload: optional_object(&ty, "payload", payload)?,
            }),
            "ping" => Ok(Self::Ping {
                payload: optional_object(&ty, "payload", payload)?,
            }),
            "pong" => {
                optional_object(&ty, "payload", payload)?;
                Ok(Self::Pong)
            }
            "subscribe" => {
                let id = required_id(&ty, message.remove("id"))?;
                let Some(Json::Object(mut payload)) = payload else {
                    return Err(format!(
                        "\"subscribe\" message expects the 'payload' property to be an object, but got {}",
                        payload.as_ref().map_or("undefined", kind)
                    ));
                };
                let query = match payload.remove("query") {
                    Some(Json::String(query)) => query,
                    other => {
                        return Err(format!(
                            "\"subscribe\" message payload expects the 'query' property to be a string, but got {}",
                            other.as_ref().map_or("undefined", kind)
                        ));
                    }
                };
                let operation_name = match payload.remove("operationName") {
                    Some(Json::String(name)) => Some(name),
                    None | Some(Json::Null) => None,
                    Some(other) => {
                        return Err(format!(
                            "\"subscribe\" message payload expects the 'operationName' property to be a string or nullish or missing, but got {}",
                            kind(&other)
                        ));
                    }
                };
                let variables =
                    optional_object(&ty, "payload.variables", payload.remove("variables"))?;
                let extensions =
                    optional_object(&ty, "payload.extensions", payload.remove("extensions"))?;
                Ok(Self::Subscribe {
                    id,
                    payload: SubscribePayload {
                        query,
                        operation_name,
                        variables,
                        extensions,
                    },
                })
            }
            "complete" => Ok(Self::Complete {
                id: required_id(&ty, message.remove("id"))?,
            }),
            "connection_ack" | "next" | "error" => Err(format!(
                "Unexpected message of type \"{ty}\" received: only the server sends it"
            )),
            _ => Err(format!("Invalid message 'type' property \"{ty}\"")),
        }
    }
}

/// An object, or nothing for a missing or `null` field.
fn optional_object(
    ty: &str,
    field: &str,
    value: Option<Json>,
) -> Result<Option<Map<String, Json>>, String> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(map)) => Ok(Some(map)),
        Some(other) => Err(format!(
            "\"{ty}\" message expects the '{field}' property to be an object or nullish or missing, but got {}",
            kind(&other)
        )),
    }
}

/// A non-empty string id.
fn required_id(ty: &str, value: Option<Json>) -> Result<String, String> {
    match value {
        Some(Json::String(id)) if !id.is_empty() => Ok(id),
        Some(Json::String(_)) => Err(format!(
            "\"{ty}\" message requires a non-empty 'id' property"
        )),
        other => Err(format!(
            "\"{ty}\" message expects the 'id' property to be a string, but got {}",
            other.as_ref().map_or("undefined", kind)
        )),
    }
}

/// The JSON type of `value`, for close reasons.
fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subscribe() {
        let msg = ClientMessage::parse(
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","operationName":null,"variables":{"x":1}}}"#,
        );
        match msg {
            Ok(ClientMessage::Subscribe { id, payload }) => {
                assert_eq!(id, "1");
                assert_eq!(payload.query, "{ a }");
                assert!(payload.operation_name.is_none());
                assert!(payload.variables.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_invalid_messages() {
        for text in [
            "not json",
            "[]",
            r#"{"id":"1"}"#,
            r#"{"type":5}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"next","id":"1","payload":{}}"#,
            r#"{"type":"connection_ack"}"#,
            r#"{"type":"connection_init","payload":"x"}"#,
            r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#,
            r#"{"type":"subscribe","id":1,"payload":{"query":"{a}"}}"#,
            r#"{"type":"subscribe","id":"1"}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":1}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":[]}}"#,
            r#"{"type":"complete"}"#,
        ] {
            assert!(ClientMessage::parse(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn accepts_optional_payloads() {
        for text in [
            r#"{"type":"connection_init"}"#,
            r#"{"type":"connection_init","payload":null}"#,
            r#"{"type":"ping","payload":{"a":1}}"#,
            r#"{"type":"pong"}"#,
            r#"{"type":"complete","id":"x"}"#,
        ] {
            assert!(ClientMessage::parse(text).is_ok(), "{text} was rejected");
        }
    }

    #[test]
    fn encodes_messages() {
        assert_eq!(
            encode(&ServerMessage::ConnectionAck),
            r#"{"type":"connection_ack"}"#
        );
        assert_eq!(
            encode(&ServerMessage::Pong { payload: None }),
            r#"{"type":"pong"}"#
        );
        assert_eq!(
            encode(&ServerMessage::Complete { id: "7" }),
            r#"{"type":"complete","id":"7"}"#
        );
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(100);
        let t = truncate(s, MAX_CLOSE_REASON);
        assert!(t.len() <= MAX_CLOSE_REASON);
        assert_eq!(t.len() % 2, 0);
    }
}
