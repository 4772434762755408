//! `Viewed`: a published message seen through a view, as a message of its own: the same
//! header and sequence, the view's payload, and `shape`, `dtype`, `view` (and `compression`)
//! saying what it is. Built once per frame per view and shared by the view's subscribers
//! (each encodes to its envelope once, lazily, as any message does). A frame the view cannot
//! apply to becomes a `view-error` notice in its place.

use std::sync::Arc;

use serde_json::{json, Value};

use super::spec::ViewSpec;
use crate::codec::envelope::{encode_message, Draft};
use crate::codec::Envelope;
use crate::hub::Message;

/// What a view made of one message.
#[derive(Debug)]
pub struct Viewed {
    /// The message to deliver.
    pub message: Arc<Message>,
    /// Bytes of the array before the view (0 when nothing was computed).
    pub bytes_in: usize,
    /// Bytes of the view's payload as delivered (after compression).
    pub bytes_out: usize,
}

impl Viewed {
    /// `message` seen through `spec`. Messages without a payload (and notices) pass unchanged.
    pub fn new(spec: &ViewSpec, message: &Arc<Message>) -> Self {
        let unchanged = || Self { message: Arc::clone(message), bytes_in: 0, bytes_out: 0 };
        let Some(source) = message.source() else { return unchanged() };
        let Some(payload) = source.payload() else { return unchanged() };
        let Some(hint) = source.hint() else {
            return Self::error(spec, message, "the message's payload is not an array".into());
        };
        let output = match spec.apply(payload, hint) {
            Ok(output) => output,
            Err(detail) => return Self::error(spec, message, detail),
        };
        let mut header = source.header().clone();
        header.insert("shape".into(), json!(output.shape));
        header.insert("dtype".into(), Value::from(output.dtype.clone()));
        header.insert("view".into(), Value::from(spec.name()));
        let hint = match spec.codec() {
            Some(codec) => {
                header.insert("compression".into(), Value::from(codec.name()));
                None // the JSON envelope carries compressed bytes as base64
            }
            None => Some((output.dtype.as_str(), output.shape.clone())),
        };
        let draft = match Draft::from_header(header, Some(&output.payload), hint) {
            Ok(draft) => draft,
            Err(e) => return Self::error(spec, message, e.to_string()),
        };
        let encoded = draft.finish(message.sequence());
        let viewed =
            Message::data(message.sequence(), message.entry_id(), message.published(), encoded.msgpack, encoded.json);
        Self { message: Arc::new(viewed), bytes_in: payload.len(), bytes_out: output.payload.len() }
    }

    /// The `view-error` notice delivered instead of a frame the view cannot apply to.
    fn error(spec: &ViewSpec, message: &Message, detail: String) -> Self {
        let notice = json!({
            "type": "view-error",
            "sequence": message.sequence(),
            "view": spec.name(),
            "detail": detail,
        });
        let json = serde_json::to_vec(&notice).unwrap_or_default();
        // A JSON object always encodes.
        let msgpack = encode_message(&json, Envelope::Msgpack).unwrap_or_default();
        Self { message: Arc::new(Message::notice(msgpack, json.into())), bytes_in: 0, bytes_out: 0 }
    }
}
