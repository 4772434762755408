//! `SubscribeOptions`: what a Tiled subscription asks for beyond its node (`start`,
//! `notify_gaps`, `max_queue_bytes`, `on_overflow`, the view: `slice`, `bin`, `dtype`, `range`,
//! `compression`, and `max_fps`), parsed by ONE parser for both routes: from
//! the query string of `WS /api/v1/stream/single/{path}` and from the fields of a `subscribe`
//! message of `WS /api/v1/stream/multi` (turned into the same name -> text lookup, a [`Query`]).
//! An option added here works on both. The envelope is not a subscription option: it is chosen
//! per connection ([`envelope`]).

use http::StatusCode;

use super::nodes::Node;
use super::query::{BadParameter, Query};
use crate::codec::Envelope;
use crate::hub::{Overflow, Policy, DEFAULT_MAX_QUEUE_BYTES};
use crate::text::py_repr;
use crate::view::ViewSpec;

/// What a subscription asked for (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeOptions {
    /// Replay from this sequence (`None`: live only).
    pub start: Option<u64>,
    /// Notices, byte cap and overflow policy.
    pub policy: Policy,
    /// What to see of each frame (`None`: the frames as published).
    pub view: Option<ViewSpec>,
    /// At most this many frames a second, the newest wins.
    pub max_fps: Option<f64>,
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
        let view = ViewSpec::parse(|name| params.get(name)).map_err(bad)?;
        let max_fps = match params.get("max_fps") {
            None => None,
            Some(raw) => match raw.trim().parse::<f64>() {
                Ok(fps) if fps.is_finite() && fps > 0.0 => Some(fps),
                _ => return Err(bad(format!("max_fps must be a number > 0, not {}", py_repr(raw)))),
            },
        };
        Ok(Self { start, policy, view, max_fps })
    }

    /// Checks the view against the node: views apply to array streams, and the slice and the
    /// dtype must suit the array (400 otherwise, as the array GET answers a bad slice).
    pub fn check_view(&self, node: &Node) -> Result<(), BadParameter> {
        let Some(view) = &self.view else { return Ok(()) };
        match node.info.array.as_ref().filter(|_| node.info.family == "array") {
            Some(array) => {
                let shape: Vec<usize> = array.shape.iter().map(|n| usize::try_from(*n).unwrap_or(usize::MAX)).collect();
                view.check(&array.dtype, &shape).map_err(bad)
            }
            None => Err(bad(format!(
                "slice, bin, dtype and compression apply to array streams, not to a {} node",
                node.info.family
            ))),
        }
    }

    /// The envelope the hub subscription reads for a subscriber that receives `envelope`: a
    /// view's subscriber reads the published frames in msgpack (encoded anyway, never JSON).
    pub fn read_as(&self, envelope: Envelope) -> Envelope {
        if self.view.is_some() {
            Envelope::Msgpack
        } else {
            envelope
        }
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
        let viewed = SubscribeOptions::parse(&Query::parse(Some("bin=2&max_fps=5"))).unwrap();
        assert!(viewed.view.is_some() && viewed.max_fps == Some(5.0));
        assert_eq!(viewed.read_as(Envelope::Json), Envelope::Msgpack);
        for bad in [
            "start=-1",
            "start=18446744073709551616",
            "max_queue_bytes=0",
            "notify_gaps=maybe",
            "on_overflow=x",
            "max_fps=0",
            "max_fps=x",
        ] {
            let refused = SubscribeOptions::parse(&Query::parse(Some(bad))).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
