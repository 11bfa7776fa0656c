//! The Redis side of coordination, through `fred`: a command client and a
//! subscriber that resubscribes after reconnecting, both reconnecting on
//! their own forever; every command has a short timeout so that a Redis
//! that is gone slows nothing down. What lives here: the wake-up channels
//! (events committed, breakers changed), the shared circuit breakers (a
//! compare-and-set script over a versioned hash) and the dispatch claims.
//! Every key and channel starts with the installation's key prefix.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message;
use fred::types::scripts::Script;
use tokio::sync::broadcast;

use crate::domain::breaker::CircuitBreaker;

/// How long one Redis command may take before coordination counts Redis as
/// gone for it (and falls back to local).
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Sets the breaker hash to `ARGV[2]` at version `ARGV[1] + 1` if it is
/// still at version `ARGV[1]` (0: absent), keeps it `ARGV[3]` ms, and tells
/// every replica (`ARGV[4]` on channel `ARGV[5]`). 1 when set, 0 when
/// another replica moved it first.
const BREAKER_CAS: &str = r"
local version = redis.call('HGET', KEYS[1], 'v')
if (version or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(ARGV[1]) + 1), 'b', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[4])
return 1
";

/// Deletes `KEYS[1]` only while it still holds `ARGV[1]` (our claim).
const RELEASE_CLAIM: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// How long a breaker's shared state outlives its last change: long past
/// any reset timeout, short enough that deleted connectors leave nothing.
const BREAKER_KEEP: Duration = Duration::from_secs(24 * 3600);

/// A message from another replica (or this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Events were committed, up to this sequence.
    EventsCommitted(i64),
    /// This connector's breaker changed.
    BreakerChanged(String),
}

pub struct Redis {
    client: Client,
    subscriber: SubscriberClient,
    prefix: String,
    breaker_cas: Script,
    release_claim: Script,
}

/// The URL schemes `fred` reads: standalone, sentinel and cluster, each
/// also over TLS.
const SCHEMES: &[&str] = &["redis", "rediss", "redis-sentinel", "rediss-sentinel", "redis-cluster", "rediss-cluster"];

/// Why a Redis URL cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--redis-url: {0}")]
pub struct RedisUrlError(String);

impl Redis {
    /// Clients for `url` (standalone, `rediss://`, sentinel or cluster, as
    /// `fred` reads them), connecting in the background: a Redis that is
    /// down at start is a degraded start, not a failed one.
    ///
    /// # Errors
    /// The URL is not one `fred` understands.
    pub fn connect(url: &str, prefix: &str) -> Result<Redis, RedisUrlError> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        if !SCHEMES.contains(&scheme) {
            return Err(RedisUrlError(format!("{scheme:?} is not a Redis scheme (one of {})", SCHEMES.join(", "))));
        }
        let mut config = Config::from_url(url).map_err(|err| RedisUrlError(err.to_string()))?;
        // Keep retrying the first connection too, rather than giving up.
        config.fail_fast = false;
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(2);
                connection.internal_command_timeout = Duration::from_secs(2);
                connection.max_command_attempts = 1;
            })
            .with_performance_config(|performance| performance.default_command_timeout = COMMAND_TIMEOUT)
            // Unlimited attempts, 100 ms growing to 2 s apart.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
        let client = builder.build().map_err(|err| RedisUrlError(err.to_string()))?;
        let subscriber = builder.build_subscriber_client().map_err(|err| RedisUrlError(err.to_string()))?;
        client.connect();
        subscriber.connect();
        subscriber.manage_subscriptions();
        Ok(Redis {
            client,
            subscriber,
            prefix: prefix.to_owned(),
            breaker_cas: Script::from_lua(BREAKER_CAS),
            release_claim: Script::from_lua(RELEASE_CLAIM),
        })
    }

    fn channel(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A round trip.
    ///
    /// # Errors
    /// Redis does not answer within [`COMMAND_TIMEOUT`].
    pub async fn ping(&self) -> Result<(), Error> {
        self.client.ping::<()>(None).await
    }

    /// Subscribes to both channels (again after every reconnection) and
    /// forwards what arrives, until the returned receiver's sender is gone.
    ///
    /// # Errors
    /// The subscription could not be made now (it is made on reconnection).
    pub async fn subscribe(&self) -> (broadcast::Receiver<Message>, Result<(), Error>) {
        let messages = self.subscriber.message_rx();
        let subscribed = self.subscriber.subscribe(vec![self.channel("events"), self.channel("breakers")]).await;
        (messages, subscribed)
    }

    /// What a message received on one of our channels says.
    pub fn notice(&self, message: &Message) -> Option<Notice> {
        let channel = message.channel.strip_prefix(self.prefix.as_str())?;
        match channel {
            "events" => message.value.as_i64().map(Notice::EventsCommitted),
            "breakers" => message.value.as_string().map(Notice::BreakerChanged),
            _ => None,
        }
    }

    /// Tells every replica that events up to `sequence` are committed.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn publish_events(&self, sequence: i64) -> Result<(), Error> {
        self.client.publish::<(), _, _>(self.channel("events"), sequence).await
    }

    fn breaker_key(&self, connector: &str) -> String {
        format!("{}breaker:{connector}", self.prefix)
    }

    /// A connector's shared breaker and its version (0 and `None`: never set).
    ///
    /// # Errors
    /// Redis failures; a stored breaker that does not parse.
    pub async fn breaker(&self, connector: &str) -> Result<(i64, Option<CircuitBreaker>), Error> {
        let (version, state): (Option<i64>, Option<String>) =
            self.client.hmget(self.breaker_key(connector), vec!["v", "b"]).await?;
        let breaker = match state {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|err| Error::new(ErrorKind::Parse, format!("breaker of {connector:?} in Redis: {err}")))?,
            ),
            None => None,
        };
        Ok((version.unwrap_or(0), breaker))
    }

    /// Stores `breaker` as the next version after `version`, unless another
    /// replica changed it since: `false` then.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn set_breaker(&self, connector: &str, version: i64, breaker: &CircuitBreaker) -> Result<bool, Error> {
        let json = serde_json::to_string(breaker).map_err(|err| Error::new(ErrorKind::Parse, err.to_string()))?;
        let keep = i64::try_from(BREAKER_KEEP.as_millis()).unwrap_or(i64::MAX);
        let args: Vec<Value> = vec![
            version.to_string().into(),
            json.into(),
            keep.into(),
            connector.into(),
            self.channel("breakers").into(),
        ];
        let set: i64 =
            self.breaker_cas.evalsha_with_reload(&self.client, vec![self.breaker_key(connector)], args).await?;
        Ok(set == 1)
    }

    fn claim_key(&self, work: &str) -> String {
        format!("{}dispatch:{work}", self.prefix)
    }

    /// Claims `work` for `replica` for `ttl`, unless another replica holds
    /// it: `false` then.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn claim(&self, work: &str, replica: &str, ttl: Duration) -> Result<bool, Error> {
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let set: Option<String> = self
            .client
            .set(self.claim_key(work), replica, Some(Expiration::PX(ttl)), Some(SetOptions::NX), false)
            .await?;
        Ok(set.is_some())
    }

    /// Gives up `replica`'s claim on `work`, if it still holds it.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn release(&self, work: &str, replica: &str) -> Result<(), Error> {
        let _: i64 =
            self.release_claim.evalsha_with_reload(&self.client, vec![self.claim_key(work)], vec![replica]).await?;
        Ok(())
    }

    /// Closes both connections (shutdown).
    pub async fn quit(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.client.quit().await;
    }
}
