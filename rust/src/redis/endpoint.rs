//! `Endpoint`: where the Redis master is. A `redis://` / `rediss://` URL names it once; a
//! `redis+sentinel://` URL names Sentinels that are asked for the current master at every
//! (re)connect, and every second by the reader ([`Endpoint::moved`]): a failover that leaves
//! the old master running (`SENTINEL FAILOVER`, a partition) is followed within a second, not
//! only when the old master drops its clients.
//!
//! `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER[/DB]`: the hosts are
//! Sentinels (port 26379 by default), `MASTER` the name they monitor; the credentials and the
//! database are the master's (Sentinels are asked without credentials).

use percent_encoding::percent_decode_str;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Client, ConnectionAddr, RedisConnectionInfo, RedisResult};
use tokio::sync::Mutex;

use crate::error::{CoreError, CoreResult};
use crate::hub::redact;

/// The scheme of a Sentinel-monitored master.
const SENTINEL_SCHEME: &str = "redis+sentinel";
const SENTINEL_PORT: u16 = 26379;

/// Where the master is (see the module docs).
pub(crate) enum Endpoint {
    /// A fixed address.
    Fixed(Client),
    /// Asked of the Sentinels at each connect.
    Sentinel {
        sentinels: Mutex<Sentinel>,
        master: String,
        /// The master's credentials and database.
        info: RedisConnectionInfo,
        /// The address of the master last connected to.
        current: parking_lot::Mutex<Option<ConnectionAddr>>,
    },
}

impl Endpoint {
    /// Checks the URL's form; does not connect.
    pub(crate) fn parse(url: &str) -> CoreResult<Self> {
        let invalid = |why: &str| CoreError::Config(format!("invalid Redis URL {:?}: {why}", redact(url)));
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid("no scheme"));
        };
        if !scheme.eq_ignore_ascii_case(SENTINEL_SCHEME) {
            return Client::open(url).map(Self::Fixed).map_err(|e| invalid(&e.to_string()));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .map(|host| sentinel_address(host).ok_or_else(|| invalid(&format!("bad Sentinel address {host:?}"))))
            .collect::<CoreResult<Vec<_>>>()?;
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let master =
            segments.next().ok_or_else(|| invalid("no master name, e.g. redis+sentinel://host:26379/mymaster"))?;
        let db = match segments.next() {
            Some(db) => db.parse::<i64>().map_err(|_| invalid("the database must be a number"))?,
            None => 0,
        };
        if segments.next().is_some() {
            return Err(invalid("expected /MASTER[/DB] after the Sentinels"));
        }
        let mut info = RedisConnectionInfo::default().set_db(db);
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').map_or((userinfo, None), |(u, p)| (u, Some(p)));
            if !user.is_empty() {
                info = info.set_username(decode(user));
            }
            if let Some(password) = password {
                info = info.set_password(decode(password));
            }
        }
        let sentinels = Sentinel::build(sentinels).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self::Sentinel {
            sentinels: Mutex::new(sentinels),
            master: decode(master),
            info,
            current: parking_lot::Mutex::new(None),
        })
    }

    /// A client of the current master (for Sentinels: the one they name now, checked to be a
    /// master).
    pub(crate) async fn master(&self) -> RedisResult<Client> {
        match self {
            Self::Fixed(client) => Ok(client.clone()),
            Self::Sentinel { sentinels, master, info, current } => {
                let client = ask(sentinels, master, info).await?;
                *current.lock() = Some(client.get_connection_info().addr().clone());
                Ok(client)
            }
        }
    }

    /// Whether the Sentinels now name another master than the one last connected to (never for
    /// a fixed address, nor when no Sentinel answers: a lost connection is noticed anyway).
    pub(crate) async fn moved(&self) -> bool {
        let Self::Sentinel { sentinels, master, info, current } = self else { return false };
        match ask(sentinels, master, info).await {
            Ok(client) => current.lock().as_ref() != Some(client.get_connection_info().addr()),
            Err(_) => false,
        }
    }
}

/// A client of the master the first answering Sentinel names, checked to be a master.
async fn ask(sentinels: &Mutex<Sentinel>, master: &str, info: &RedisConnectionInfo) -> RedisResult<Client> {
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info.clone());
    sentinels.lock().await.async_master_for(master, Some(&node)).await
}

/// `host[:port]` or `[v6]:port` as a `redis://` URL of a Sentinel.
fn sentinel_address(host: &str) -> Option<String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') => (name, port.parse::<u16>().ok()?),
        _ => (host, SENTINEL_PORT),
    };
    (!name.is_empty()).then(|| format!("redis://{name}:{port}"))
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        assert_eq!(sentinel_address("a:1").as_deref(), Some("redis://a:1"));
        assert_eq!(sentinel_address("a").as_deref(), Some("redis://a:26379"));
        assert_eq!(sentinel_address("[::1]:5").as_deref(), Some("redis://[::1]:5"));
        assert_eq!(sentinel_address("a:x"), None);
        assert_eq!(sentinel_address(""), None);
        let Ok(Endpoint::Sentinel { master, info, .. }) = Endpoint::parse("redis+sentinel://u:p%40@a:1,b/m%31/2")
        else {
            panic!("not parsed as Sentinels")
        };
        assert_eq!(master, "m1");
        assert_eq!((info.db(), info.username(), info.password()), (2, Some("u"), Some("p@")));
        for bad in
            ["redis+sentinel://a:1", "redis+sentinel://a:1/m/x", "redis+sentinel://a:1/m/1/2", "redis+sentinel://a:z/m"]
        {
            assert!(matches!(Endpoint::parse(bad), Err(CoreError::Config(_))), "{bad}");
        }
        assert!(matches!(Endpoint::parse("redis://h:1/0"), Ok(Endpoint::Fixed(_))));
    }
}
