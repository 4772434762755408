//! `SubscribeOptions`: what a Tiled subscription asks for beyond its node (`start`,
//! `notify_gaps`, `max_queue_bytes`, `on_overflow`), parsed by ONE parser for both routes: from
//! the query string of `WS /api/v1/stream/single/{path}` and from the fields of a `subscribe`
//! message of `WS /api/v1/stream/multi` (turned into the same name -> text lookup, a [`Query`]).
//! An option added here works on both. The envelope is not a subscription option: it is chosen
//! per connection ([`envelope`]).

use http::StatusCode;

use super::query::{BadParameter, Query};
use crate::codec::Envelope;
use crate::hub::{Overflow, Policy, DEFAULT_MAX_QUEUE_BYTES};

/// What a subscription asked for (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Replay from this sequence (`None`: live only).
    pub start: Option<u64>,
    /// Notices, byte cap and overflow policy.
    pub policy: Policy,
}

fn bad(detail: String) -> BadParameter {
    BadParameter { status: StatusCode::BAD_REQUEST, detail }
}

impl SubscribeOptions {
    /// Parses the options from `params` (absent ones take Tiled's defaults and the default
    /// byte cap); every refusal is a 400 naming the option.
    pub fn parse(params: &Query) -> Result<Self, BadParameter> {
        let notify_gaps = match params.get("notify_gaps").unwrap_or("false").to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => return Err(bad(format!("notify_gaps must be true or false, not {other:?}"))),
        };
        let on_overflow = match params.get("on_overflow").unwrap_or("close") {
            "close" => Overflow::Close,
            "latest" => Overflow::Latest,
            _ => return Err(bad("on_overflow must be one of ['close', 'latest']".into())),
        };
        let max_queue_bytes = params.integer::<usize>("max_queue_bytes", 1, StatusCode::BAD_REQUEST)?;
        let start = params.integer::<u64>("start", 0, StatusCode::BAD_REQUEST)?;
        let policy =
            Policy { notify_gaps, max_queue_bytes: max_queue_bytes.unwrap_or(DEFAULT_MAX_QUEUE_BYTES), on_overflow };
        Ok(Self { start, policy })
    }
}

/// The connection's `envelope_format` (default JSON); a 400 for anything else.
pub fn envelope(params: &Query) -> Result<Envelope, BadParameter> {
    match params.get("envelope_format").unwrap_or("json") {
        "json" => Ok(Envelope::Json),
        "msgpack" => Ok(Envelope::Msgpack),
        other => Err(bad(format!("envelope_format must be one of ['json', 'msgpack'], not {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_the_control_plane_parsed_them() {
        let none = Query::parse(None);
        let o = SubscribeOptions::parse(&none).unwrap();
        assert_eq!(envelope(&none).unwrap(), Envelope::Json);
        assert_eq!(o.start, None);
        assert_eq!(o.policy.max_queue_bytes, DEFAULT_MAX_QUEUE_BYTES);
        let q = Query::parse(Some("envelope_format=msgpack&start=0&notify_gaps=TRUE&on_overflow=latest"));
        let o = SubscribeOptions::parse(&q).unwrap();
        assert_eq!((envelope(&q).unwrap(), o.start, o.policy.notify_gaps), (Envelope::Msgpack, Some(0), true));
        assert_eq!(o.policy.on_overflow, Overflow::Latest);
        assert_eq!(envelope(&Query::parse(Some("envelope_format=xml"))).unwrap_err().status, StatusCode::BAD_REQUEST);
        for bad in ["start=-1", "start=18446744073709551616", "max_queue_bytes=0", "notify_gaps=maybe", "on_overflow=x"]
        {
            let refused = SubscribeOptions::parse(&Query::parse(Some(bad))).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
