//! `Delivery`: how the frames of one subscription reach its subscriber, on either subscription
//! route: in its envelope, through its view (computed once per frame for all the view's
//! subscribers, [`crate::view::ViewCache`]) and its `max_fps` (newest wins; the frame that goes
//! out says how many it replaced, `skipped`). It hands out encoded bytes; the route frames them.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::options::SubscribeOptions;
use super::shared::Shared;
use super::throttle::Throttle;
use crate::codec::extra_field::with_count;
use crate::codec::Envelope;
use crate::hub::Message;
use crate::view::ViewMember;

/// See the module docs.
pub struct Delivery {
    envelope: Envelope,
    member: Option<ViewMember>,
    throttle: Option<Throttle>,
}

impl Delivery {
    /// The delivery of a subscriber of `topic` with `options`, receiving `envelope`.
    pub fn new(shared: &Shared, topic: u64, options: &SubscribeOptions, envelope: Envelope) -> Self {
        let member = (options.view.is_some() || options.max_fps.is_some())
            .then(|| shared.views.join(topic, options.view.clone()));
        Self { envelope, member, throttle: options.max_fps.map(Throttle::new) }
    }

    /// The encoded frame for `message` (through the view, if any).
    fn bytes(&self, message: &Arc<Message>) -> Bytes {
        match &self.member {
            Some(member) => member.view(message).envelope(self.envelope).clone(),
            None => message.envelope(self.envelope).clone(),
        }
    }

    /// Takes a batch's frames and returns the ones to send now; with `max_fps`, data frames are
    /// held back instead (the newest wins) and notices go out at once.
    pub fn take(&mut self, frames: &[Arc<Message>]) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(frames.len());
        for message in frames {
            match self.throttle.as_mut() {
                Some(throttle) if message.sequence() != 0 => {
                    let replaced = throttle.offer(message);
                    if let Some(member) = self.member.as_ref().filter(|_| replaced > 0) {
                        member.skipped(replaced);
                    }
                }
                _ => out.push(self.bytes(message)),
            }
        }
        out
    }

    /// When the frame `max_fps` holds back is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.throttle.as_ref().and_then(Throttle::due)
    }

    /// The frame `max_fps` held back, if any, saying how many it skipped before it.
    pub fn release(&mut self) -> Option<Bytes> {
        let (message, skipped) = self.throttle.as_mut().and_then(Throttle::release)?;
        let viewed = self.member.as_ref().map_or_else(|| Arc::clone(&message), |m| m.view(&message));
        Some(with_count(viewed.envelope(self.envelope), self.envelope, "skipped", skipped))
    }
}
