//! The messages of `WS /api/v1/stream/multi`: what a client sends ([`Request`], from a JSON
//! text message or a msgpack binary message, on either kind of connection) and what the server
//! answers (objects encoded in the connection's envelope). A `data` message wraps a frame the hub
//! encoded once: the frame's bytes are spliced between a per-subscription prefix and (JSON) a
//! closing brace, never decoded or re-encoded.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{json, Map, Value};
use tokio_websockets::Message;

use super::super::query::Query;
use super::super::session::frame;
use crate::codec::envelope::encode_message;
use crate::codec::Envelope;

/// Longest subscription id a client may choose (it is echoed in every message of it).
pub const MAX_ID_BYTES: usize = 256;
/// Deepest nesting a msgpack control message may have.
const MAX_DEPTH: usize = 16;

/// A message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `{"type": "auth", "api_key": ...}` (also `connection_auth`, as tiled PR #1508 names it).
    Auth {
        /// The key, if one was given (empty counts as none).
        api_key: Option<String>,
    },
    /// `{"type": "subscribe", "id": ..., "path": ..., <options>}`.
    Subscribe {
        /// The client's name for the subscription.
        id: String,
        /// The node's path.
        path: String,
        /// The other fields, as text, for the options parser the single route uses too.
        options: Query,
    },
    /// `{"type": "unsubscribe", "id": ...}` (also `complete`, as graphql-ws and #1508 end one).
    Unsubscribe {
        /// Which subscription.
        id: String,
    },
    /// `{"type": "ping", "payload": ...}`: answered with a `pong` carrying the same payload.
    Ping {
        /// Echoed back.
        payload: Option<Value>,
    },
    /// `{"type": "pong"}`: ignored.
    Pong,
}

/// A client message that could not be understood: the `error` to answer with (status 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The subscription it named, if it named one.
    pub id: Option<String>,
    /// What is wrong.
    pub detail: String,
}

impl Malformed {
    fn new(id: Option<String>, detail: impl Into<String>) -> Self {
        Self { id, detail: detail.into() }
    }
}

/// Parses a text (JSON) or binary (msgpack) message from the client.
pub fn parse(message: &Message) -> Result<Request, Malformed> {
    let value = if let Some(text) = message.as_text() {
        serde_json::from_str::<Value>(text).map_err(|e| Malformed::new(None, format!("not valid JSON: {e}")))?
    } else if message.is_binary() {
        read_msgpack(message.as_payload())?
    } else {
        return Err(Malformed::new(None, "expected a text (JSON) or binary (msgpack) message"));
    };
    from_value(value)
}

/// One msgpack value as JSON (map keys must be strings; binary is refused).
fn read_msgpack(bytes: &[u8]) -> Result<Value, Malformed> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|e| Malformed::new(None, format!("not valid msgpack: {e}")))?;
    if !reader.is_empty() {
        return Err(Malformed::new(None, "not valid msgpack: bytes after the first value"));
    }
    to_json(value).ok_or_else(|| Malformed::new(None, "msgpack message with binary data or non-string map keys"))
}

fn to_json(value: rmpv::Value) -> Option<Value> {
    Some(match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(s)) => Value::from(s),
            _ => return None,
        },
        rmpv::Value::F32(f) => Value::from(f64::from(f)),
        rmpv::Value::F64(f) => Value::from(f),
        rmpv::Value::String(s) => Value::String(s.into_str()?),
        rmpv::Value::Array(items) => Value::Array(items.into_iter().map(to_json).collect::<Option<_>>()?),
        rmpv::Value::Map(pairs) => {
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k.as_str()?.to_owned(), to_json(v)?);
            }
            Value::Object(map)
        }
        rmpv::Value::Binary(_) | rmpv::Value::Ext(..) => return None,
    })
}

/// The subscription id of `message`: a non-empty string of at most [`MAX_ID_BYTES`].
fn id_of(message: &Map<String, Value>) -> Result<String, Malformed> {
    match message.get("id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Ok(id.clone()),
        Some(Value::String(_)) => {
            Err(Malformed::new(None, format!("id must be a non-empty string of at most {MAX_ID_BYTES} bytes")))
        }
        Some(_) => Err(Malformed::new(None, "id must be a string")),
        None => Err(Malformed::new(None, "id is required")),
    }
}

fn from_value(value: Value) -> Result<Request, Malformed> {
    let Value::Object(message) = value else {
        return Err(Malformed::new(None, "a message must be an object with a \"type\""));
    };
    let Some(kind) = message.get("type").and_then(Value::as_str) else {
        return Err(Malformed::new(None, "a message must be an object with a \"type\""));
    };
    match kind {
        "auth" | "connection_auth" => match message.get("api_key") {
            None | Some(Value::Null) => Ok(Request::Auth { api_key: None }),
            Some(Value::String(key)) => Ok(Request::Auth { api_key: (!key.is_empty()).then(|| key.clone()) }),
            Some(_) => Err(Malformed::new(None, "api_key must be a string")),
        },
        "subscribe" => {
            let id = id_of(&message)?;
            let path = match message.get("path") {
                Some(Value::String(path)) => path.clone(),
                _ => return Err(Malformed::new(Some(id), "path must be a string")),
            };
            let options = message.iter().filter(|(k, _)| !matches!(k.as_str(), "type" | "id" | "path"));
            let pairs = options.filter_map(|(k, v)| Some((k.clone(), option_text(v)?))).collect();
            Ok(Request::Subscribe { id, path, options: Query::from_pairs(pairs) })
        }
        "unsubscribe" | "complete" => Ok(Request::Unsubscribe { id: id_of(&message)? }),
        "ping" => Ok(Request::Ping { payload: message.get("payload").cloned() }),
        "pong" => Ok(Request::Pong),
        other => {
            let id = id_of(&message).ok();
            Err(Malformed::new(id, format!("unknown message type {other:?}")))
        }
    }
}

/// An option's value as the text a query string would carry (`null`: absent).
fn option_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `{"type": "connection_ack"}`.
pub fn connection_ack() -> Value {
    json!({"type": "connection_ack"})
}

/// `{"type": "error", "id": ..., "status": ..., "detail": ...}` (`id` null for the connection).
pub fn error(id: Option<&str>, status: u16, detail: &str) -> Value {
    json!({"type": "error", "id": id, "status": status, "detail": detail})
}

/// `{"type": "complete", "id": ..., "code": ..., "reason": ...}`: the subscription ended, with
/// the close code and reason the single route would have closed its socket with.
pub fn complete(id: &str, code: u16, reason: &str) -> Value {
    json!({"type": "complete", "id": id, "code": code, "reason": reason})
}

/// `{"type": "pong", "payload": ...}`.
pub fn pong(payload: Option<Value>) -> Value {
    match payload {
        Some(payload) => json!({"type": "pong", "payload": payload}),
        None => json!({"type": "pong"}),
    }
}

/// A server message (an object) as a WebSocket message in `envelope`.
pub fn reply(value: &Value, envelope: Envelope) -> Message {
    let encoded = match envelope {
        Envelope::Json => Bytes::from(value.to_string()),
        // An object always encodes; an empty message would only be a bug.
        Envelope::Msgpack => encode_message(value.to_string().as_bytes(), envelope).unwrap_or_default(),
    };
    frame(encoded, envelope == Envelope::Json)
}

/// What goes before a frame in every `data` message of one subscription, encoded once.
#[derive(Debug, Clone)]
pub struct DataPrefix {
    bytes: Bytes,
    envelope: Envelope,
}

impl DataPrefix {
    /// JSON: `{"type":"data","id":<id>,"message":`; msgpack: a 3-entry map's header, `type`,
    /// `id` and the `message` key (the frame, a msgpack map, is its value; nothing follows).
    pub fn new(id: &str, envelope: Envelope) -> Self {
        let bytes = match envelope {
            Envelope::Json => {
                let id = Value::from(id).to_string();
                format!("{{\"type\":\"data\",\"id\":{id},\"message\":").into_bytes()
            }
            Envelope::Msgpack => {
                let mut buf = Vec::with_capacity(32 + id.len());
                // Writing to a Vec cannot fail, and `id` is bounded by MAX_ID_BYTES.
                let _ = rmp::encode::write_map_len(&mut buf, 3);
                for text in ["type", "data", "id", id, "message"] {
                    let _ = rmp::encode::write_str(&mut buf, text);
                }
                buf
            }
        };
        Self { bytes: bytes.into(), envelope }
    }

    /// The `data` message carrying `frame` (one of the hub's encoded envelopes, or the schema).
    /// One copy of the frame: the WebSocket library sends a message from one buffer.
    pub fn wrap(&self, frame_bytes: &[u8]) -> Message {
        let text = self.envelope == Envelope::Json;
        let mut out = BytesMut::with_capacity(self.bytes.len() + frame_bytes.len() + 1);
        out.put_slice(&self.bytes);
        out.put_slice(frame_bytes);
        if text {
            out.put_u8(b'}');
        }
        frame(out.freeze(), text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_message(text: &str) -> Message {
        Message::text(text.to_owned())
    }

    #[test]
    fn client_messages() {
        let auth = parse(&json_message(r#"{"type": "auth", "api_key": "s3"}"#)).unwrap();
        assert_eq!(auth, Request::Auth { api_key: Some("s3".into()) });
        let anonymous = parse(&json_message(r#"{"type": "connection_auth", "api_key": ""}"#)).unwrap();
        assert_eq!(anonymous, Request::Auth { api_key: None });
        let text = r#"{"type": "subscribe", "id": "s1", "path": "a/b", "start": 3, "notify_gaps": true,
                       "on_overflow": "latest", "max_queue_bytes": null}"#;
        let Request::Subscribe { id, path, options } = parse(&json_message(text)).unwrap() else { panic!() };
        assert_eq!((id.as_str(), path.as_str()), ("s1", "a/b"));
        assert_eq!(options.get("start"), Some("3"));
        assert_eq!(options.get("notify_gaps"), Some("true"));
        assert_eq!(options.get("on_overflow"), Some("latest"));
        assert_eq!(options.get("max_queue_bytes"), None);
        let parsed = super::super::super::options::SubscribeOptions::parse(&options).unwrap();
        assert_eq!((parsed.start, parsed.policy.notify_gaps), (Some(3), true));
        let stop = parse(&json_message(r#"{"type": "complete", "id": "s1"}"#)).unwrap();
        assert_eq!(stop, Request::Unsubscribe { id: "s1".into() });
        let ping = parse(&json_message(r#"{"type": "ping", "payload": {"t": 1}}"#)).unwrap();
        assert_eq!(ping, Request::Ping { payload: Some(json!({"t": 1})) });
    }

    #[test]
    fn malformed_messages_name_what_is_wrong() {
        let cases = [
            (r#"not json"#, None, "not valid JSON"),
            (r#"[1, 2]"#, None, "must be an object"),
            (r#"{"id": "x"}"#, None, "must be an object with a \"type\""),
            (r#"{"type": "subscribe", "path": "a"}"#, None, "id is required"),
            (r#"{"type": "subscribe", "id": 7, "path": "a"}"#, None, "id must be a string"),
            (r#"{"type": "subscribe", "id": "", "path": "a"}"#, None, "non-empty"),
            (r#"{"type": "subscribe", "id": "s", "path": 1}"#, Some("s"), "path must be a string"),
            (r#"{"type": "auth", "api_key": 1}"#, None, "api_key must be a string"),
            (r#"{"type": "teleport", "id": "s"}"#, Some("s"), "unknown message type \"teleport\""),
        ];
        for (text, id, detail) in cases {
            let refused = parse(&json_message(text)).unwrap_err();
            assert_eq!(refused.id.as_deref(), id, "{text}");
            assert!(refused.detail.contains(detail), "{text}: {}", refused.detail);
        }
        let long = format!(r#"{{"type": "unsubscribe", "id": "{}"}}"#, "x".repeat(MAX_ID_BYTES + 1));
        assert!(parse(&json_message(&long)).is_err());
    }

    #[test]
    fn msgpack_control_messages() {
        let value = json!({"type": "subscribe", "id": "m", "path": "x", "start": 0});
        let mut buf = encode_message(value.to_string().as_bytes(), Envelope::Msgpack).unwrap().to_vec();
        let Request::Subscribe { id, options, .. } = parse(&Message::binary(buf.clone())).unwrap() else { panic!() };
        assert_eq!((id.as_str(), options.get("start")), ("m", Some("0")));
        buf.push(0xc0);
        assert!(parse(&Message::binary(buf)).unwrap_err().detail.contains("after the first value"));
        assert!(parse(&Message::binary(vec![0xc4, 1, 0])).is_err(), "binary data is refused");
        let deep = [vec![0x91; MAX_DEPTH + 2], vec![0xc0]].concat();
        assert!(parse(&Message::binary(deep)).is_err(), "depth is bounded");
    }

    #[test]
    fn data_messages_wrap_the_frame() {
        let frame = br#"{"sequence":1,"payload":[1,2]}"#;
        let wrapped = DataPrefix::new("a\"b", Envelope::Json).wrap(frame);
        let value: Value = serde_json::from_str(wrapped.as_text().unwrap()).unwrap();
        assert_eq!(value, json!({"type": "data", "id": "a\"b", "message": {"sequence": 1, "payload": [1, 2]}}));
        let inner = encode_message(br#"{"sequence": 2}"#, Envelope::Msgpack).unwrap();
        let wrapped = DataPrefix::new("s1", Envelope::Msgpack).wrap(&inner);
        assert!(wrapped.is_binary());
        assert_eq!(
            read_msgpack(wrapped.as_payload()).unwrap(),
            json!({"type": "data", "id": "s1", "message": {"sequence": 2}})
        );
        let ack = reply(&connection_ack(), Envelope::Msgpack);
        assert_eq!(read_msgpack(ack.as_payload()).unwrap(), connection_ack());
        let err = reply(&error(None, 400, "x"), Envelope::Json);
        assert_eq!(err.as_text().unwrap(), r#"{"type":"error","id":null,"status":400,"detail":"x"}"#);
    }
}
