//! Wire encodings of stream messages: the envelope formats and array payload transcoding.

pub mod array_json;
pub mod entry_frames;
pub mod envelope;
pub mod extra_field;
mod msgpack;

use crate::error::{CoreError, CoreResult};

/// The two envelope formats of Tiled's WebSocket stream (`envelope_format=` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Envelope {
    /// A msgpack map per frame (binary WebSocket frame); the payload is msgpack `bin`.
    Msgpack,
    /// A JSON object per frame (text WebSocket frame); the payload is transcoded.
    Json,
}

impl Envelope {
    /// Both formats, in [`Envelope::index`] order.
    pub const ALL: [Envelope; 2] = [Envelope::Msgpack, Envelope::Json];

    /// Parses `"msgpack"` or `"json"`.
    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "msgpack" => Ok(Self::Msgpack),
            "json" => Ok(Self::Json),
            other => Err(CoreError::UnknownEnvelope(other.to_owned())),
        }
    }

    /// A dense index (0 = msgpack, 1 = json), used for per-envelope slots.
    pub fn index(self) -> usize {
        match self {
            Self::Msgpack => 0,
            Self::Json => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(Envelope::parse("msgpack"), Ok(Envelope::Msgpack));
        assert_eq!(Envelope::parse("json"), Ok(Envelope::Json));
        assert!(matches!(Envelope::parse("xml"), Err(CoreError::UnknownEnvelope(_))));
        for (i, e) in Envelope::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }
}
