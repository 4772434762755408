//! `WS /data/{sid}/push`: producers send entries (Redis Streamer's push), with no Python per
//! batch once each stream's node is known.
//!
//! `header=true` (default): each batch is a text frame (the JSON header, see
//! [`super::params::split_header`]) then a binary frame; `header=false`: each binary frame is
//! one entry of the single stream of the URL. `ack=true` answers every batch with the JSON list
//! of its new entry ids. Each stream's entries of a batch go to the hub in one call (one Redis
//! round trip). A bad batch (malformed header, offsets that do not cover the frame, an entry id
//! that does not increase, a frame over the size limit) closes the socket with a reason and
//! writes none of its entries; earlier batches stay.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::params::{self, Entry, InputError};
use super::{entry_header, unavailable, StreamSession, CLOSE_BAD_INPUT, CLOSE_TOO_BIG, CLOSE_UNAVAILABLE};
use crate::edge::auth::Access;
use crate::edge::control::StreamName;
use crate::edge::query::Query;
use crate::edge::respond::{self, Body};
use crate::edge::session;
use crate::edge::shared::Shared;
use crate::edge::ws::{self, Socket};
use crate::error::CoreError;
use crate::hub::{EntryId, IdSpec};

/// Why a connection is closed: code and reason.
struct Rejected(u16, String);

impl From<InputError> for Rejected {
    fn from(e: InputError) -> Self {
        Rejected(CLOSE_BAD_INPUT, e.0)
    }
}

/// Answers the handshake; the session runs on its own task once upgraded.
pub async fn handle(shared: Arc<Shared>, mut request: Request<Incoming>, sid: String) -> Response<Body> {
    let query = Query::parse(request.uri().query());
    let session = match StreamSession::open(&shared, &request, &query, &sid, Access::Write).await {
        Ok(session) => session,
        Err(refused) => return refused,
    };
    let options = (|| -> Result<(bool, bool), InputError> {
        let with_header = params::flag(&query, "header", true)?;
        let ack = params::flag(&query, "ack", false)?;
        if !with_header && session.names.len() != 1 {
            return Err(InputError("header=false pushes to exactly one stream".into()));
        }
        Ok((with_header, ack))
    })();
    let (with_header, ack) = match options {
        Ok(options) => options,
        Err(e) => return respond::error(StatusCode::BAD_REQUEST, &e.0),
    };
    let (response, upgrade) = match ws::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.response(),
    };
    shared.stats.websocket("other");
    tokio::spawn(run(shared, upgrade, session, with_header, ack));
    response
}

async fn run(shared: Arc<Shared>, upgrade: OnUpgrade, session: StreamSession, with_header: bool, ack: bool) {
    let Ok(upgraded) = upgrade.await else { return };
    let mut socket = ws::socket(upgraded, shared.config.streamer_max_message_bytes);
    let known = session.names.iter().zip(&session.nodes).filter_map(|(name, node)| Some((name.clone(), node.id?)));
    let topics: HashMap<String, u64> = known.collect();
    let mut batches = Batches { shared: &shared, session, topics };
    let limit = shared.config.streamer_max_message_bytes;
    let rejected = loop {
        let batch = match next_batch(&mut socket, with_header, limit).await {
            Ok(Some(batch)) => batch,
            Ok(None) => return session::finish(socket).await, // the peer closed or broke the protocol
            Err(rejected) => break rejected,
        };
        let (header, data) = batch;
        let ids = match batches.publish(header.as_deref(), &data).await {
            Ok(ids) => ids,
            Err(rejected) => break rejected,
        };
        if ack {
            let text =
                serde_json::to_string(&ids.iter().map(EntryId::to_string).collect::<Vec<_>>()).unwrap_or_default();
            if socket.send(session::frame(Bytes::from(text), true)).await.is_err() {
                return;
            }
        }
    };
    session::close(socket, rejected.0, &rejected.1).await;
}

/// The next batch: its header text (with `header=true`) and the binary frame; `None` when the
/// peer closed.
async fn next_batch(
    socket: &mut Socket,
    with_header: bool,
    limit: usize,
) -> Result<Option<(Option<String>, Bytes)>, Rejected> {
    let mut header = None;
    if with_header {
        let Some(first) = receive(socket).await else { return Ok(None) };
        match first.as_text() {
            Some(text) => header = Some(text.to_owned()),
            None => return Err(Rejected(CLOSE_BAD_INPUT, "expected a text frame (the JSON header) first".into())),
        }
    }
    let Some(message) = receive(socket).await else { return Ok(None) };
    if !message.is_binary() {
        return Err(Rejected(CLOSE_BAD_INPUT, "expected a binary frame (the entries)".into()));
    }
    let data: Bytes = message.into_payload().into();
    if data.len() > limit {
        return Err(Rejected(CLOSE_TOO_BIG, format!("message of {} bytes over the {limit} limit", data.len())));
    }
    Ok(Some((header, data)))
}

/// The next data or text message (pings are answered by the library); `None` at the end.
async fn receive(socket: &mut Socket) -> Option<tokio_websockets::Message> {
    loop {
        let message = socket.next().await?.ok()?;
        if message.is_close() {
            return None;
        }
        if message.is_text() || message.is_binary() {
            return Some(message);
        }
    }
}

/// One connection's publisher: each stream's node resolved once.
struct Batches<'a> {
    shared: &'a Arc<Shared>,
    session: StreamSession,
    topics: HashMap<String, u64>,
}

impl Batches<'_> {
    async fn topic(&mut self, sid: &str) -> Result<u64, Rejected> {
        if let Some(topic) = self.topics.get(sid) {
            return Ok(*topic);
        }
        let name = StreamName {
            sid: sid.to_owned(),
            device: self.session.device.clone(),
            prefix: self.session.prefix.clone(),
            create: true,
        };
        let node = self.shared.nodes.control().stream(name).await.map_err(|r| {
            let code = if r.status == StatusCode::SERVICE_UNAVAILABLE { CLOSE_UNAVAILABLE } else { CLOSE_BAD_INPUT };
            Rejected(code, r.detail())
        })?;
        let topic = node.id.ok_or_else(|| Rejected(CLOSE_BAD_INPUT, format!("stream {sid:?} could not be created")))?;
        self.topics.insert(sid.to_owned(), topic);
        Ok(topic)
    }

    /// Publishes a batch; the ids in the batch's order. Nothing is published if a stream's ids
    /// are refused before any stream of the batch was written.
    async fn publish(&mut self, header: Option<&str>, data: &Bytes) -> Result<Vec<EntryId>, Rejected> {
        let entries = match header {
            None => vec![Entry { sid: self.session.names[0].clone(), entry_id: None, range: 0..data.len() }],
            Some(header) => params::split_header(header, &self.session.names, data.len())?,
        };
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match groups.iter_mut().find(|(sid, _)| *sid == entry.sid) {
                Some((_, indices)) => indices.push(index),
                None => groups.push((entry.sid.clone(), vec![index])),
            }
        }
        let mut topics = Vec::with_capacity(groups.len());
        for (sid, _) in &groups {
            topics.push(self.topic(sid).await?);
        }
        let hub = self.session.hub.clone();
        let specs = entries
            .iter()
            .map(|e| IdSpec::parse(e.entry_id.as_deref()).map_err(|e| Rejected(CLOSE_BAD_INPUT, nothing_written(&e))))
            .collect::<Result<Vec<_>, _>>()?;
        if groups.len() > 1 {
            self.check_ids(&groups, &topics, &entries, &specs).await?;
        }
        let header = entry_header();
        let mut ids = vec![EntryId::ZERO; entries.len()];
        for ((_, indices), topic) in groups.iter().zip(&topics) {
            let payloads: Vec<&[u8]> = indices.iter().map(|i| &data[entries[*i].range.clone()]).collect();
            let wanted: Vec<IdSpec> = indices.iter().map(|i| specs[*i]).collect();
            let started = std::time::Instant::now();
            let published = hub.publish_entries(*topic, &header, &payloads, &wanted).await.map_err(|e| match e {
                CoreError::Unavailable(_) | CoreError::ShutDown => Rejected(CLOSE_UNAVAILABLE, unavailable(&e)),
                other => Rejected(CLOSE_BAD_INPUT, nothing_written(&other)),
            })?;
            self.shared.stats.published(*topic, published.len() as u64, started.elapsed().as_secs_f64());
            for (i, id) in indices.iter().zip(published) {
                ids[*i] = id;
            }
        }
        Ok(ids)
    }

    /// A batch over several streams is published one stream at a time: refuse explicit ids
    /// that do not follow each stream's last one before writing any (a concurrent push to the
    /// same stream can still slip in between; the hub then refuses that stream's part).
    async fn check_ids(
        &self,
        groups: &[(String, Vec<usize>)],
        topics: &[u64],
        entries: &[Entry],
        specs: &[IdSpec],
    ) -> Result<(), Rejected> {
        for ((sid, indices), topic) in groups.iter().zip(topics) {
            let Some(first) = indices.iter().find(|i| entries[**i].entry_id.is_some()) else { continue };
            let info =
                self.session.hub.stream_info(*topic).await.map_err(|e| Rejected(CLOSE_UNAVAILABLE, unavailable(&e)))?;
            let last = info.map_or(EntryId::ZERO, |i| i.last_id);
            if specs[*first].resolve(last, crate::hub::entry_id::wall_ms()).is_err() {
                let asked = entries[*first].entry_id.clone().unwrap_or_default();
                return Err(Rejected(
                    CLOSE_BAD_INPUT,
                    format!("entry id {asked:?} of stream {sid:?} is not greater than its last id (nothing of this batch was written)"),
                ));
            }
        }
        Ok(())
    }
}

fn nothing_written(error: &CoreError) -> String {
    format!("{error} (nothing of this batch was written)")
}
