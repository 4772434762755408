//! Redis Streamer's read frames: the JSON header `[[name, entry_id, end_offset], ...]` and the
//! entries' payloads joined in one binary frame (end offsets index into it). Built once per
//! read; a read of one entry sends that message's payload itself, shared by every reader.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::hub::Message;

/// The header of a read: `names[topic]` is the JSON-encoded name of each topic.
pub fn header_text(names: &[String], entries: &[(usize, Arc<Message>)]) -> String {
    let mut text = String::with_capacity(2 + entries.len() * 48);
    text.push('[');
    let mut end = 0;
    for (k, (topic, message)) in entries.iter().enumerate() {
        end += message.payload().map_or(0, Bytes::len);
        if k > 0 {
            text.push(',');
        }
        let name = names.get(*topic).map_or("\"\"", String::as_str);
        text.push_str(&format!("[{name},\"{}\",{end}]", message.entry_id()));
    }
    text.push(']');
    text
}

/// The payloads of a read, concatenated (the message's own bytes when there is one entry).
pub fn joined(entries: &[(usize, Arc<Message>)]) -> Bytes {
    if let [(_, message)] = entries {
        return message.payload().cloned().unwrap_or_default();
    }
    let total = entries.iter().map(|(_, m)| m.payload().map_or(0, Bytes::len)).sum();
    let mut out = BytesMut::with_capacity(total);
    for (_, message) in entries {
        if let Some(payload) = message.payload() {
            out.extend_from_slice(payload);
        }
    }
    out.freeze()
}
