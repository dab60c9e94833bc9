//! The GatewayClient library: the whole Gateway API for any program outside the cluster
//! (a web backend, a cron job, the `gatewayworker client` command), the role of PHP's
//! `walkor/GatewayClient`.
//!
//! It finds the gateways through a register (or a fixed list of lan addresses), turns each
//! call into the very frames a PHP GatewayClient writes (the worker's
//! [`Planner`] with [`Caller::Client`]), and talks to each
//! gateway the way the original does: one short TCP connection per frame, the
//! GATEWAY_CLIENT_CONNECT prefix in the same write when a secret key is set, and for a query
//! one reply record read back. Query replies of several gateways are folded by the same
//! [`Merge`] a worker uses, so results are the worker's.
//!
//! *Difference* (issue 18; the original waits its whole timeout for a stalled gateway on
//! every call): the client remembers across calls which gateways owe it an answer. One that
//! owed an answer or a connect for [`ClientSettings::suspect_after`] (2 s) is *suspect*: the
//! call waiting for it stops at that moment and reports it missing as a timeout would, and
//! later calls do not wait for it until it answers again ([`health`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), gatewayworker::client::ClientError> {
//! use gatewayworker::client::GatewayClient;
//!
//! let client = GatewayClient::builder()
//!     .register("127.0.0.1:1236")
//!     .secret("s3cr3t")
//!     .build()?;
//! client.send_to_group("room1", b"hello", &[]).await?;
//! let online = client.get_all_client_count().await?;
//! println!("{online} clients online");
//! # Ok(()) }
//! ```
//!
//! Every call of the original exists as a method; [`GatewayClient::call`] takes any
//! [`ApiCall`] (PHP-typed messages and sessions) and returns the PHP value the original
//! returns.
//!
//! * [`directory`]: the gateway list (register lookup, cached for a second, or fixed).
//! * [`exchange`]: one TCP exchange (send and close, or send and read one answer).
//! * [`health`]: each gateway's health across calls: a gateway that owes an answer for
//!   [`ClientSettings::suspect_after`] is *suspect* and calls stop waiting for it.
//! * [`pool`]: idle connections reused in persistent mode.
//! * [`error`]: what a call fails with, [`ClientError`].

pub mod directory;
pub mod error;
pub mod exchange;
pub mod health;
pub mod pool;

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

pub use directory::Gateways;
pub use error::{ClientError, LinkFailure};
pub use health::{ClientStats, SUSPECT_AFTER_DEFAULT};

use crate::api::gather::{Gather, TimeoutPolicy};
use crate::api::merge::{php_int, GroupScan, Merge};
use crate::api::plan::{auth_frame, frame_bytes, Caller, Completion, Outgoing, Planner};
use crate::api::ApiCall;
use crate::protocol::client_id::GatewayAddr;
use crate::protocol::php::body::scalar_to_string;
use crate::protocol::php::unserialize::unserialize_lenient;
use crate::protocol::php::{is_empty_bytes, PhpArray, PhpValue};
use directory::{Directory, LookupLimits};
use health::{Admit, Check, Health};
use pool::Pool;

/// Default connect timeout to a register or a gateway: the original's `connectTimeout`.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default wait for a query's reply (and the register's line) once connected: the
/// GatewayClient's 5 s (spec 2.4).
pub const REPLY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default bound on one reply record's payload: 64 MiB, room for the sessions of every
/// client of a big gateway.
pub const REPLY_SIZE_MAX_DEFAULT: u32 = crate::protocol::frame::REPLY_SIZE_MAX_DEFAULT;
/// How long a register list is reused: the original's 1 s cache.
pub const REGISTER_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(1);

/// Everything a [`GatewayClient`] needs; [`GatewayClient::builder`] fills it.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Where the gateways are.
    pub gateways: Gateways,
    /// The cluster's secret key (`""` when none).
    pub secret_key: String,
    /// Connect timeout, to registers and gateways.
    pub connect_timeout: Duration,
    /// Wait for an answer once connected.
    pub reply_timeout: Duration,
    /// Largest reply record payload accepted (`..._max`); a longer reply fails that
    /// gateway's part with [`LinkFailure::TooLarge`] (and the connection is dropped).
    /// The default, 64 MiB, is the gateway's `reply_size_max` and the worker's.
    pub reply_size_max: u32,
    /// Largest frame sent to a gateway: its `package_size_max`, 10 MiB by default. A
    /// call whose frame would be longer fails with [`ApiError::TooLarge`] before anything
    /// is sent (the gateway would close the connection on it).
    ///
    /// [`ApiError::TooLarge`]: crate::api::ApiError::TooLarge
    pub package_size_max: usize,
    /// Longest register line accepted.
    pub register_line_bytes_max: usize,
    /// How long a register's list is reused.
    pub register_cache_ttl: Duration,
    /// What a query returns when some gateways did not answer.
    pub timeout_policy: TimeoutPolicy,
    /// A gateway that has owed an answer (a query written and no byte back, or a connect
    /// not completed) this long, across all the calls of this client, is *suspect*: calls
    /// stop waiting for it and report it missing like a timeout ([`LinkFailure::Suspect`],
    /// then `timeout_policy`) until it answers again ([`health`]). `None` (or zero): wait
    /// `connect_timeout` and `reply_timeout` every time, as the original. Default
    /// [`SUSPECT_AFTER_DEFAULT`], 2 s, as the BusinessWorker.
    pub suspect_after: Option<Duration>,
    /// How the `getAllGroup*` merges treat a client without uid or groups.
    pub group_scan: GroupScan,
    /// Gateways reached at another address than the lan address they announce (a NAT,
    /// a container port mapping): `(announced, dialled)`.
    pub dial: Vec<(GatewayAddr, SocketAddr)>,
    /// Keep gateway connections open between calls (the original's
    /// `persistentConnection`); off: one connection per frame, closed after it.
    pub persistent: bool,
    /// Idle connections kept per gateway in persistent mode.
    pub idle_per_gateway_max: usize,
    /// Tests and simulation only: how registers and gateways are reached (`None`: tokio's
    /// TCP, [`exchange::TokioConnector`]). No setting reaches it.
    #[doc(hidden)]
    pub connector: Option<Arc<dyn exchange::Connector>>,
}

impl ClientSettings {
    /// Defaults around a gateway source.
    pub fn new(gateways: Gateways) -> ClientSettings {
        ClientSettings {
            gateways,
            secret_key: String::new(),
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            reply_timeout: REPLY_TIMEOUT_DEFAULT,
            reply_size_max: REPLY_SIZE_MAX_DEFAULT,
            package_size_max: crate::protocol::frame::PACKAGE_SIZE_MAX_DEFAULT as usize,
            register_line_bytes_max: crate::protocol::register::FROM_REGISTER_LINE_MAX,
            register_cache_ttl: REGISTER_CACHE_TTL_DEFAULT,
            timeout_policy: TimeoutPolicy::Fail,
            suspect_after: Some(SUSPECT_AFTER_DEFAULT),
            group_scan: GroupScan::Complete,
            dial: Vec::new(),
            persistent: false,
            idle_per_gateway_max: pool::IDLE_PER_GATEWAY_MAX_DEFAULT,
            connector: None,
        }
    }
}

/// Builds a [`GatewayClient`]; see the module example.
#[derive(Debug, Default, Clone)]
pub struct GatewayClientBuilder {
    registers: Vec<String>,
    gateways: Vec<String>,
    secret_key: String,
    connect_timeout: Option<Duration>,
    reply_timeout: Option<Duration>,
    reply_size_max: Option<u32>,
    timeout_policy: TimeoutPolicy,
    suspect_after: Option<Duration>,
    group_scan: GroupScan,
    dial: Vec<(String, SocketAddr)>,
    persistent: bool,
}

impl GatewayClientBuilder {
    /// Finds the gateways through this register (`host:port`); repeat to give fallbacks,
    /// asked in order.
    pub fn register(mut self, address: impl Into<String>) -> Self {
        self.registers.push(address.into());
        self
    }

    /// Talks to this gateway lan address (`ip:port`, as announced) instead of asking a
    /// register; repeat for every gateway (shard) of the cluster.
    pub fn gateway(mut self, address: impl Into<String>) -> Self {
        self.gateways.push(address.into());
        self
    }

    /// The cluster's secret key (`secretKey`).
    pub fn secret(mut self, secret_key: impl Into<String>) -> Self {
        self.secret_key = secret_key.into();
        self
    }

    /// Connect timeout [default: [`CONNECT_TIMEOUT_DEFAULT`]].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Wait for an answer once connected [default: [`REPLY_TIMEOUT_DEFAULT`]].
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = Some(timeout);
        self
    }

    /// Largest reply accepted [default: [`REPLY_SIZE_MAX_DEFAULT`]].
    pub fn reply_size_max(mut self, bytes: u32) -> Self {
        self.reply_size_max = Some(bytes);
        self
    }

    /// [`TimeoutPolicy::Partial`] returns what the answering gateways said, like the
    /// original; the default [`TimeoutPolicy::Fail`] reports the silent gateway.
    pub fn timeout_policy(mut self, policy: TimeoutPolicy) -> Self {
        self.timeout_policy = policy;
        self
    }

    /// Stop waiting for a gateway that has owed an answer this long, and do not wait for
    /// it again until it answers ([`ClientSettings::suspect_after`]); zero turns it off
    /// (the original waits the whole timeout every call) [default:
    /// [`SUSPECT_AFTER_DEFAULT`]].
    pub fn suspect_after(mut self, after: Duration) -> Self {
        self.suspect_after = Some(after);
        self
    }

    /// [`GroupScan::StopAtFirstGap`] reproduces the original's `getAllGroup*` scans.
    pub fn group_scan(mut self, scan: GroupScan) -> Self {
        self.group_scan = scan;
        self
    }

    /// Reaches the gateway announced as `announced` (`ip:port`) at `dialled` instead.
    pub fn dial(mut self, announced: impl Into<String>, dialled: SocketAddr) -> Self {
        self.dial.push((announced.into(), dialled));
        self
    }

    /// Keeps gateway connections open between calls (`persistentConnection`): fewer
    /// connects for a busy caller. Each request still carries the auth prefix.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Checks the addresses and makes the client; nothing is contacted yet.
    pub fn build(self) -> Result<GatewayClient, ClientError> {
        let source = match (self.registers.is_empty(), self.gateways.is_empty()) {
            (true, true) => return Err(ClientError::NotConfigured),
            (false, false) => {
                return Err(ClientError::Api(crate::api::ApiError::BadArgument(
                    "give either registers or gateways, not both".to_owned(),
                )))
            }
            (false, true) => Gateways::Register(self.registers),
            (true, false) => Gateways::Fixed(
                self.gateways
                    .iter()
                    .map(|a| parse_gateway(a))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let mut settings = ClientSettings::new(source);
        settings.secret_key = self.secret_key;
        settings.connect_timeout = self.connect_timeout.unwrap_or(CONNECT_TIMEOUT_DEFAULT);
        settings.reply_timeout = self.reply_timeout.unwrap_or(REPLY_TIMEOUT_DEFAULT);
        settings.reply_size_max = self.reply_size_max.unwrap_or(REPLY_SIZE_MAX_DEFAULT);
        settings.timeout_policy = self.timeout_policy;
        if let Some(after) = self.suspect_after {
            settings.suspect_after = (!after.is_zero()).then_some(after);
        }
        settings.group_scan = self.group_scan;
        settings.persistent = self.persistent;
        for (announced, dialled) in &self.dial {
            settings.dial.push((parse_gateway(announced)?, *dialled));
        }
        Ok(GatewayClient::new(settings))
    }
}

/// `ip:port` of a gateway lan address; client ids can only name IPv4 gateways.
fn parse_gateway(address: &str) -> Result<GatewayAddr, ClientError> {
    address.parse::<SocketAddrV4>().map_err(|_| {
        ClientError::Api(crate::api::ApiError::BadArgument(format!(
            "gateway address `{address}` is not ipv4:port"
        )))
    })
}

/// A handle on the Gateway API of one cluster. Cheap to clone; calls may run concurrently.
///
/// ```no_run
/// # async fn demo() -> Result<(), gatewayworker::client::ClientError> {
/// use gatewayworker::client::GatewayClient;
///
/// // Without a register: every gateway shard's lan address.
/// let client = GatewayClient::builder()
///     .gateway("10.0.0.5:2000")
///     .gateway("10.0.0.5:2001")
///     .build()?;
/// for client_id in client.get_client_id_by_uid("ann").await? {
///     client.join_group(&client_id, "vip").await?;
/// }
/// if let Some(session) = client.get_session("0a0000050b5500000007").await? {
///     println!("{session:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GatewayClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ClientSettings,
    directory: Directory,
    pool: Pool,
    connector: Arc<dyn exchange::Connector>,
    health: Health,
}

impl Inner {
    /// One command to `addr`: a pooled connection when persistent (a fresh one if the
    /// pooled one fails to take the write), else a connection of its own, closed after.
    async fn send(&self, addr: SocketAddr, request: Bytes) -> Result<(), LinkFailure> {
        let connect_timeout = self.settings.connect_timeout;
        if !self.settings.persistent {
            return exchange::send(&*self.connector, addr, &request, connect_timeout).await;
        }
        if let Some(mut stream) = self.pool.take(addr) {
            if exchange::write(&mut stream, &request, connect_timeout)
                .await
                .is_ok()
            {
                self.pool.put(addr, stream);
                return Ok(());
            }
        }
        let mut stream = exchange::connect(&*self.connector, addr, connect_timeout).await?;
        exchange::write(&mut stream, &request, connect_timeout).await?;
        self.pool.put(addr, stream);
        Ok(())
    }

    /// One query to `addr`; in persistent mode a pooled connection that turns out closed
    /// is replaced once by a fresh one, and only a clean exchange returns it to the pool.
    async fn query(
        &self,
        gateway: GatewayAddr,
        addr: SocketAddr,
        request: Bytes,
    ) -> Result<Bytes, LinkFailure> {
        let s = &self.settings;
        let on_read = || self.health.progress(gateway, health::now());
        if !s.persistent {
            return exchange::query(
                &*self.connector,
                addr,
                &request,
                s.connect_timeout,
                s.reply_timeout,
                s.reply_size_max,
                &on_read,
            )
            .await;
        }
        if let Some(mut stream) = self.pool.take(addr) {
            match exchange::query_on(
                &mut stream,
                &request,
                s.reply_timeout,
                s.reply_size_max,
                &on_read,
            )
            .await
            {
                Ok(payload) => {
                    self.pool.put(addr, stream);
                    return Ok(payload);
                }
                // Closed under us: the request never reached a live gateway; ask anew.
                Err(LinkFailure::Closed | LinkFailure::Write(_)) => {}
                Err(other) => return Err(other),
            }
        }
        let mut stream = exchange::connect(&*self.connector, addr, s.connect_timeout).await?;
        let payload = exchange::query_on(
            &mut stream,
            &request,
            s.reply_timeout,
            s.reply_size_max,
            &on_read,
        )
        .await?;
        self.pool.put(addr, stream);
        Ok(payload)
    }
}

impl Inner {
    /// A connect refused at once (no process listens, no route) is an answer of the
    /// gateway's host: nothing hangs there, so a suspect mark clears and calls get that
    /// error again, at once, instead of [`LinkFailure::Suspect`].
    fn refused<T>(&self, gateway: GatewayAddr, outcome: &Result<T, LinkFailure>) {
        if let Err(LinkFailure::Connect(_)) = outcome {
            self.health.progress(gateway, health::now());
        }
    }
}

/// Is the call's target list the whole cluster? Calls addressed by client id go to the
/// gateway the id names and need no register round trip (as in the original).
fn needs_gateway_list(call: &ApiCall) -> bool {
    !matches!(
        call,
        ApiCall::SendToClient { .. }
            | ApiCall::SendToAll {
                client_id_list: Some(_),
                ..
            }
            | ApiCall::BindUid { .. }
            | ApiCall::UnbindUid { .. }
            | ApiCall::JoinGroup { .. }
            | ApiCall::LeaveGroup { .. }
            | ApiCall::SetSession { .. }
            | ApiCall::UpdateSession { .. }
            | ApiCall::GetSession { .. }
            | ApiCall::CloseClient { .. }
            | ApiCall::DestroyClient { .. }
            | ApiCall::IsOnline { .. }
            | ApiCall::GetUidByClientId { .. }
            | ApiCall::SendToCurrentClient { .. }
            | ApiCall::CloseCurrentClient { .. }
            | ApiCall::DestroyCurrentClient
    )
}

impl GatewayClient {
    /// A builder: give a register (or gateways), maybe a secret, then `build()`.
    pub fn builder() -> GatewayClientBuilder {
        GatewayClientBuilder::default()
    }

    /// A client with these settings.
    pub fn new(settings: ClientSettings) -> GatewayClient {
        let limits = LookupLimits {
            connect_timeout: settings.connect_timeout,
            reply_timeout: settings.reply_timeout,
            register_line_bytes_max: settings.register_line_bytes_max,
            register_cache_ttl: settings.register_cache_ttl,
        };
        let connector: Arc<dyn exchange::Connector> = settings
            .connector
            .clone()
            .unwrap_or_else(|| Arc::new(exchange::TokioConnector));
        let directory = Directory::with_connector(
            settings.gateways.clone(),
            settings.secret_key.clone(),
            limits,
            connector.clone(),
        );
        let pool = Pool::new(settings.idle_per_gateway_max);
        let health = Health::new(settings.suspect_after);
        GatewayClient {
            inner: Arc::new(Inner {
                settings,
                directory,
                pool,
                connector,
                health,
            }),
        }
    }

    /// What the client did about slow gateways so far (suspicions, parts not waited for).
    pub fn stats(&self) -> ClientStats {
        self.inner.health.stats()
    }

    /// The gateways suspect now: calls do not wait for them ([`health`]).
    pub fn suspect_gateways(&self) -> Vec<GatewayAddr> {
        self.inner.health.suspects()
    }

    /// The settings in use.
    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// The gateway lan addresses calls fan out to now (register list or fixed list).
    pub async fn gateways(&self) -> Result<Vec<GatewayAddr>, ClientError> {
        self.inner.directory.gateways().await
    }

    /// Makes any API call and returns the PHP value the original returns (`null` for the
    /// `void` sends, `true` for a `sendToClient` whose frame was written).
    ///
    /// The `*CurrentClient` calls fail with [`ApiError::NoCurrentClient`]: outside a
    /// worker there is no current client.
    ///
    /// ```no_run
    /// # async fn demo(client: gatewayworker::client::GatewayClient)
    /// #     -> Result<(), gatewayworker::client::ClientError> {
    /// use bytes::Bytes;
    /// use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
    /// use gatewayworker::api::ApiCall;
    ///
    /// // An array message: the gateway JSON-encodes it for websocket clients.
    /// let mut news = PhpArray::new();
    /// news.insert(PhpKey::from_bytes(b"type"), PhpValue::str("news"));
    /// let call = ApiCall::SendToGroup {
    ///     groups: vec![Bytes::from_static(b"room1")],
    ///     message: PhpValue::Array(news),
    ///     exclude: None,
    ///     raw: false,
    /// };
    /// assert_eq!(client.call(&call).await?, PhpValue::Null);
    /// # Ok(()) }
    /// ```
    ///
    /// [`ApiError::NoCurrentClient`]: crate::api::ApiError::NoCurrentClient
    pub async fn call(&self, call: &ApiCall) -> Result<PhpValue, ClientError> {
        let gateways = if needs_gateway_list(call) {
            self.gateways().await?
        } else {
            Vec::new()
        };
        let settings = &self.inner.settings;
        let plan = Planner::new(Caller::Client, &gateways, settings.group_scan).plan(call)?;
        let max = settings.package_size_max;
        if let Some(len) = plan
            .frames
            .iter()
            .map(|o| o.frame.encoded_len())
            .find(|&len| len > max)
        {
            tracing::warn!(
                len,
                max,
                "call refused: frame over the gateway's package size"
            );
            return Err(crate::api::ApiError::TooLarge { len, max }.into());
        }
        match plan.completion {
            Completion::Ready(result) => {
                let value = result?;
                self.send_frames(&plan.frames).await?;
                Ok(value)
            }
            Completion::SendOutcome => {
                self.send_frames(&plan.frames).await?;
                Ok(PhpValue::Bool(true))
            }
            Completion::Replies(merge) => self.query_frames(plan.frames, merge).await,
        }
    }

    /// The bytes of one request: `[GATEWAY_CLIENT_CONNECT]` + the frame, one write.
    fn request(&self, outgoing: &Outgoing) -> Bytes {
        let secret = self.inner.settings.secret_key.as_bytes();
        let frame = frame_bytes(&outgoing.frame);
        // The original tests `$secretKey` for PHP truth: "0" sends no prefix either.
        if is_empty_bytes(secret) {
            return frame;
        }
        let mut out = BytesMut::new();
        out.extend_from_slice(&frame_bytes(&auth_frame(secret)));
        out.extend_from_slice(&frame);
        out.freeze()
    }

    fn dial_addr(&self, gateway: GatewayAddr) -> SocketAddr {
        self.inner
            .settings
            .dial
            .iter()
            .find(|(announced, _)| *announced == gateway)
            .map_or(SocketAddr::V4(gateway), |(_, dialled)| *dialled)
    }

    /// Writes every frame on its own connection, all at once; the first failure in frame
    /// order is the call's error (after every frame was tried, like the original's loop).
    /// A send to a suspect gateway goes on in the background and is not waited for.
    async fn send_frames(&self, frames: &[Outgoing]) -> Result<(), ClientError> {
        let outcomes = self.run_parts(frames, false).await;
        match outcomes
            .into_iter()
            .enumerate()
            .find_map(|(index, r)| r.err().map(|e| (index, e)))
        {
            None => Ok(()),
            Some((index, reason)) => Err(ClientError::Gateway {
                gateway: frames[index].to,
                reason,
            }),
        }
    }

    /// One query per frame, all at once, folded by `merge` in request order; a suspect
    /// gateway's part counts as missing ([`LinkFailure::Suspect`]).
    async fn query_frames(
        &self,
        frames: Vec<Outgoing>,
        merge: Merge,
    ) -> Result<PhpValue, ClientError> {
        let settings = &self.inner.settings;
        let targets: Vec<GatewayAddr> = frames.iter().map(|o| o.to).collect();
        let mut gather = Gather::new(merge, targets.clone(), Vec::new(), settings.reply_timeout);
        let mut failures: Vec<(usize, LinkFailure)> = Vec::new();
        for (slot, outcome) in self.run_parts(&frames, true).await.into_iter().enumerate() {
            match outcome {
                Ok(Some(payload)) => gather.answer(slot, unserialize_lenient(&payload)),
                Ok(None) => gather.fail(slot),
                Err(e) => {
                    gather.fail(slot);
                    failures.push((slot, e));
                }
            }
        }
        gather.expire();
        let (result, unanswered) = gather.finish(settings.timeout_policy);
        match result {
            Ok(value) => {
                if failures
                    .iter()
                    .any(|(_, e)| !matches!(e, LinkFailure::Suspect(_)))
                {
                    // Partial policy: the caller gets a result, so say what it lacks (a
                    // suspect gateway was warned about once, when it became suspect).
                    tracing::warn!(?unanswered, "query result without every gateway's reply");
                } else if !unanswered.is_empty() {
                    tracing::debug!(?unanswered, "query result without the suspect gateways");
                }
                Ok(value)
            }
            Err(api) => match failures.into_iter().next() {
                Some((slot, reason)) => Err(ClientError::Gateway {
                    gateway: targets[slot],
                    reason,
                }),
                None => Err(api.into()),
            },
        }
    }

    /// Runs one exchange per frame (`query`: each expects an answer), all at once, each in
    /// a task of its own, and waits for each until it ends or its gateway is suspect
    /// ([`health`]); then the outcome per frame, in order: `Ok(Some(answer))` for a query,
    /// `Ok(None)` for a send written or left to finish in the background.
    async fn run_parts(
        &self,
        frames: &[Outgoing],
        query: bool,
    ) -> Vec<Result<Option<Bytes>, LinkFailure>> {
        type Outcome = Result<Option<Bytes>, LinkFailure>;
        let inner = &self.inner;
        let suspect = LinkFailure::Suspect(inner.settings.suspect_after.unwrap_or_default());
        let mut outcomes: Vec<Option<Outcome>> = vec![None; frames.len()];
        let mut waiting: Vec<Option<oneshot::Receiver<Outcome>>> =
            (0..frames.len()).map(|_| None).collect();
        let now = health::now();
        for (slot, outgoing) in frames.iter().enumerate() {
            let gateway = outgoing.to;
            let (admit, probe) = inner.health.admit(gateway, query, now);
            if let Some(id) = probe {
                self.spawn_probe(gateway, id);
            }
            let (id, tx) = match admit {
                Admit::Skip => {
                    outcomes[slot] = Some(Err(suspect.clone()));
                    continue;
                }
                Admit::Background(id) => {
                    outcomes[slot] = Some(Ok(None));
                    (id, None)
                }
                Admit::Wait(id) => {
                    let (tx, rx) = oneshot::channel();
                    waiting[slot] = Some(rx);
                    (id, Some(tx))
                }
            };
            let request = self.request(outgoing);
            self.spawn_exchange(gateway, request, query, id, tx);
        }
        loop {
            let now = health::now();
            let mut until: Option<tokio::time::Instant> = None;
            for (slot, rx) in waiting.iter_mut().enumerate() {
                if rx.is_none() {
                    continue;
                }
                match inner.health.check(frames[slot].to, now) {
                    Check::Suspect => {
                        // Stop waiting: the exchange goes on; dropping the receiver tells
                        // it nobody waits any more.
                        *rx = None;
                        inner.health.abandoned(query);
                        outcomes[slot] = Some(if query {
                            Err(suspect.clone())
                        } else {
                            Ok(None)
                        });
                    }
                    Check::Until(at) => until = Some(until.map_or(at, |u| u.min(at))),
                    Check::Unlimited => {}
                }
            }
            if waiting.iter().all(Option::is_none) {
                break;
            }
            let first = std::future::poll_fn(|cx| {
                use std::future::Future as _;
                for (slot, rx) in waiting.iter_mut().enumerate() {
                    if let Some(receiver) = rx {
                        if let std::task::Poll::Ready(got) = std::pin::Pin::new(receiver).poll(cx) {
                            return std::task::Poll::Ready((slot, got));
                        }
                    }
                }
                std::task::Poll::Pending
            });
            let got = tokio::select! {
                biased;
                got = first => Some(got),
                () = tokio::time::sleep_until(until.unwrap_or(now)), if until.is_some() => None,
            };
            if let Some((slot, got)) = got {
                waiting[slot] = None;
                outcomes[slot] = Some(got.unwrap_or_else(|_| {
                    Err(LinkFailure::Read("the exchange task ended".to_owned()))
                }));
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(suspect.clone())))
            .collect()
    }

    /// Starts exchange `id` with `gateway` in a task of its own; its outcome goes to `tx`
    /// if the call still waits for it, else a failure is counted.
    fn spawn_exchange(
        &self,
        gateway: GatewayAddr,
        request: Bytes,
        query: bool,
        id: u64,
        tx: Option<oneshot::Sender<Result<Option<Bytes>, LinkFailure>>>,
    ) {
        let addr = self.dial_addr(gateway);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let outcome = if query {
                inner.query(gateway, addr, request).await.map(Some)
            } else {
                inner.send(addr, request).await.map(|()| None)
            };
            inner.refused(gateway, &outcome);
            let unheard = match tx {
                Some(tx) => tx.send(outcome).err(),
                None => Some(outcome),
            };
            if let Some(Err(reason)) = unheard {
                inner.health.background_failed(gateway, &reason);
            }
            inner.health.end(gateway, id, false);
        });
    }

    /// Asks suspect `gateway` a cheap question (`getAllClientCount`), answer discarded:
    /// any byte back clears its mark.
    fn spawn_probe(&self, gateway: GatewayAddr, id: u64) {
        let settings = &self.inner.settings;
        let plan = Planner::new(Caller::Client, &[gateway], settings.group_scan)
            .plan(&ApiCall::GetAllClientCount);
        let Some(outgoing) = plan.ok().and_then(|p| p.frames.into_iter().next()) else {
            self.inner.health.end(gateway, id, true);
            return;
        };
        let request = self.request(&outgoing);
        let addr = self.dial_addr(gateway);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let outcome = inner.query(gateway, addr, request).await;
            inner.refused(gateway, &outcome);
            tracing::debug!(%gateway, ?outcome, "probe of a suspect gateway");
            inner.health.end(gateway, id, true);
        });
    }

    // ---- the original's methods, typed ----------------------------------------------

    /// `sendToAll($message, null, $exclude)`: every client of every gateway but `exclude`.
    pub async fn send_to_all(
        &self,
        message: impl AsRef<[u8]>,
        exclude: &[&str],
    ) -> Result<(), ClientError> {
        self.call(&ApiCall::SendToAll {
            message: bytes_value(message),
            client_id_list: None,
            exclude: optional(exclude),
            raw: false,
        })
        .await
        .map(drop)
    }

    /// `sendToAll($message, $client_ids, $exclude)`: these clients only (an empty list
    /// sends nothing, as in the original).
    pub async fn send_to_clients(
        &self,
        client_ids: &[&str],
        message: impl AsRef<[u8]>,
        exclude: &[&str],
    ) -> Result<(), ClientError> {
        self.call(&ApiCall::SendToAll {
            message: bytes_value(message),
            client_id_list: Some(names(client_ids)),
            exclude: optional(exclude),
            raw: false,
        })
        .await
        .map(drop)
    }

    /// `sendToClient($client_id, $message)`.
    pub async fn send_to_client(
        &self,
        client_id: &str,
        message: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        self.call(&ApiCall::SendToClient {
            client_id: text(client_id),
            message: bytes_value(message),
            raw: false,
        })
        .await
        .map(drop)
    }

    /// `sendToUid($uids, $message)`: every client bound to any of `uids`.
    pub async fn send_to_uid(
        &self,
        uids: &[&str],
        message: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        self.call(&ApiCall::SendToUid {
            uids: names(uids),
            message: bytes_value(message),
            raw: false,
        })
        .await
        .map(drop)
    }

    /// `sendToGroup($group, $message, $exclude)`.
    pub async fn send_to_group(
        &self,
        group: &str,
        message: impl AsRef<[u8]>,
        exclude: &[&str],
    ) -> Result<(), ClientError> {
        self.send_to_groups(&[group], message, exclude).await
    }

    /// `sendToGroup([$groups...], $message, $exclude)`: members of any of `groups` (a
    /// client in two of them gets the message twice, as in the original).
    pub async fn send_to_groups(
        &self,
        groups: &[&str],
        message: impl AsRef<[u8]>,
        exclude: &[&str],
    ) -> Result<(), ClientError> {
        self.call(&ApiCall::SendToGroup {
            groups: names(groups),
            message: bytes_value(message),
            exclude: optional(exclude),
            raw: false,
        })
        .await
        .map(drop)
    }

    /// `bindUid($client_id, $uid)`.
    pub async fn bind_uid(&self, client_id: &str, uid: &str) -> Result<(), ClientError> {
        self.call(&ApiCall::BindUid {
            client_id: text(client_id),
            uid: text(uid),
        })
        .await
        .map(drop)
    }

    /// `unbindUid($client_id, $uid)` (the gateway ignores `uid`, spec 9.5).
    pub async fn unbind_uid(&self, client_id: &str, uid: &str) -> Result<(), ClientError> {
        self.call(&ApiCall::UnbindUid {
            client_id: text(client_id),
            uid: text(uid),
        })
        .await
        .map(drop)
    }

    /// `joinGroup($client_id, $group)`.
    pub async fn join_group(&self, client_id: &str, group: &str) -> Result<(), ClientError> {
        self.call(&ApiCall::JoinGroup {
            client_id: text(client_id),
            group: text(group),
        })
        .await
        .map(drop)
    }

    /// `leaveGroup($client_id, $group)`.
    pub async fn leave_group(&self, client_id: &str, group: &str) -> Result<(), ClientError> {
        self.call(&ApiCall::LeaveGroup {
            client_id: text(client_id),
            group: text(group),
        })
        .await
        .map(drop)
    }

    /// `ungroup($group)`: the group is dissolved on every gateway.
    pub async fn ungroup(&self, group: &str) -> Result<(), ClientError> {
        self.call(&ApiCall::Ungroup { group: text(group) })
            .await
            .map(drop)
    }

    /// `setSession($client_id, $session)`: `session` must be a PHP array.
    pub async fn set_session(&self, client_id: &str, session: PhpValue) -> Result<(), ClientError> {
        self.call(&ApiCall::SetSession {
            client_id: text(client_id),
            session,
        })
        .await
        .map(drop)
    }

    /// `updateSession($client_id, $session)`: merged into the stored session by the gateway.
    pub async fn update_session(
        &self,
        client_id: &str,
        session: PhpValue,
    ) -> Result<(), ClientError> {
        self.call(&ApiCall::UpdateSession {
            client_id: text(client_id),
            session,
        })
        .await
        .map(drop)
    }

    /// `getSession($client_id)`: `None` for an unknown client, else its session array
    /// (empty when it has none).
    pub async fn get_session(&self, client_id: &str) -> Result<Option<PhpValue>, ClientError> {
        let value = self
            .call(&ApiCall::GetSession {
                client_id: text(client_id),
            })
            .await?;
        Ok(match value {
            PhpValue::Null | PhpValue::Bool(false) => None,
            other => Some(other),
        })
    }

    /// `closeClient($client_id, $message)`: `message` is sent as the last one, if any.
    pub async fn close_client(
        &self,
        client_id: &str,
        message: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        self.call(&ApiCall::CloseClient {
            client_id: text(client_id),
            message: message.map(bytes_value),
        })
        .await
        .map(drop)
    }

    /// `destoryClient($client_id)`: closes at once, nothing more is sent.
    pub async fn destroy_client(&self, client_id: &str) -> Result<(), ClientError> {
        self.call(&ApiCall::DestroyClient {
            client_id: text(client_id),
        })
        .await
        .map(drop)
    }

    /// `isOnline($client_id)`.
    pub async fn is_online(&self, client_id: &str) -> Result<bool, ClientError> {
        let value = self
            .call(&ApiCall::IsOnline {
                client_id: text(client_id),
            })
            .await?;
        Ok(php_int(&value) != 0)
    }

    /// `isUidOnline($uid)`.
    pub async fn is_uid_online(&self, uid: &str) -> Result<bool, ClientError> {
        let value = self.call(&ApiCall::IsUidOnline { uid: text(uid) }).await?;
        Ok(php_int(&value) != 0)
    }

    /// `getClientIdByUid($uid)`: the client ids bound to `uid`.
    pub async fn get_client_id_by_uid(&self, uid: &str) -> Result<Vec<String>, ClientError> {
        let value = self
            .call(&ApiCall::GetClientIdByUid { uid: text(uid) })
            .await?;
        Ok(values_text(&value))
    }

    /// `getUidByClientId($client_id)`: the uid, or `None` when unbound or unknown.
    pub async fn get_uid_by_client_id(
        &self,
        client_id: &str,
    ) -> Result<Option<String>, ClientError> {
        let value = self
            .call(&ApiCall::GetUidByClientId {
                client_id: text(client_id),
            })
            .await?;
        Ok(match value {
            PhpValue::Null => None,
            scalar => scalar_text(&scalar),
        })
    }

    /// `getClientIdListByGroup($group)`: the client ids of the group's members.
    pub async fn get_client_id_list_by_group(
        &self,
        group: &str,
    ) -> Result<Vec<String>, ClientError> {
        let value = self
            .call(&ApiCall::GetClientIdListByGroup { group: text(group) })
            .await?;
        Ok(values_text(&value))
    }

    /// `getClientSessionsByGroup($group)`: client id ⇒ session array.
    pub async fn get_client_sessions_by_group(&self, group: &str) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::GetClientSessionsByGroup { group: text(group) })
            .await
    }

    /// `getClientCountByGroup($group)`.
    pub async fn get_client_count_by_group(&self, group: &str) -> Result<i64, ClientError> {
        let value = self
            .call(&ApiCall::GetClientCountByGroup { group: text(group) })
            .await?;
        Ok(php_int(&value))
    }

    /// `getAllClientIdList()`.
    pub async fn get_all_client_id_list(&self) -> Result<Vec<String>, ClientError> {
        let value = self.call(&ApiCall::GetAllClientIdList).await?;
        Ok(values_text(&value))
    }

    /// `getAllClientSessions()`: client id ⇒ session array, every client.
    pub async fn get_all_client_sessions(&self) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::GetAllClientSessions {
            group: Bytes::new(),
        })
        .await
    }

    /// `getAllClientCount()` / `getAllClientIdCount()`: clients online in the cluster.
    pub async fn get_all_client_count(&self) -> Result<i64, ClientError> {
        let value = self.call(&ApiCall::GetAllClientCount).await?;
        Ok(php_int(&value))
    }

    /// `getAllUidList()`: every bound uid.
    pub async fn get_all_uid_list(&self) -> Result<Vec<String>, ClientError> {
        let value = self.call(&ApiCall::GetAllUidList).await?;
        Ok(values_text(&value))
    }

    /// `getAllUidCount()`.
    pub async fn get_all_uid_count(&self) -> Result<i64, ClientError> {
        let value = self.call(&ApiCall::GetAllUidCount).await?;
        Ok(php_int(&value))
    }

    /// `getUidListByGroup($group)`.
    pub async fn get_uid_list_by_group(&self, group: &str) -> Result<Vec<String>, ClientError> {
        let value = self
            .call(&ApiCall::GetUidListByGroup { group: text(group) })
            .await?;
        Ok(values_text(&value))
    }

    /// `getUidCountByGroup($group)`.
    pub async fn get_uid_count_by_group(&self, group: &str) -> Result<i64, ClientError> {
        let value = self
            .call(&ApiCall::GetUidCountByGroup { group: text(group) })
            .await?;
        Ok(php_int(&value))
    }

    /// `getAllGroupIdList()`: groups with members.
    pub async fn get_all_group_id_list(&self) -> Result<Vec<String>, ClientError> {
        let value = self.call(&ApiCall::GetAllGroupIdList).await?;
        Ok(values_text(&value))
    }

    /// `getAllGroupUidList()`: group ⇒ (uid ⇒ uid).
    pub async fn get_all_group_uid_list(&self) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::GetAllGroupUidList).await
    }

    /// `getAllGroupUidCount()`: group ⇒ number of uids.
    pub async fn get_all_group_uid_count(&self) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::GetAllGroupUidCount).await
    }

    /// `getAllGroupClientIdList()`: group ⇒ (client id ⇒ client id).
    pub async fn get_all_group_client_id_list(&self) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::GetAllGroupClientIdList).await
    }

    /// `getAllGroupClientIdCount()`: group ⇒ number of clients.
    pub async fn get_all_group_client_id_count(&self) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::GetAllGroupClientIdCount).await
    }

    /// `batchGetClientIdByUid($uids)`: uid ⇒ list of client ids, every uid present.
    pub async fn batch_get_client_id_by_uid(&self, uids: &[&str]) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::BatchGetClientIdByUid { uids: names(uids) })
            .await
    }

    /// `batchGetClientIdCountByGroup($groups)`: group ⇒ count.
    pub async fn batch_get_client_count_by_group(
        &self,
        groups: &[&str],
    ) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::BatchGetClientIdCountByGroup {
            groups: names(groups),
        })
        .await
    }

    /// `isUidsOnline($uids)`: uid ⇒ 0/1.
    pub async fn is_uids_online(&self, uids: &[&str]) -> Result<PhpValue, ClientError> {
        self.call(&ApiCall::IsUidsOnline { uids: names(uids) })
            .await
    }
}

fn text(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn names(list: &[&str]) -> Vec<Bytes> {
    list.iter().map(|s| text(s)).collect()
}

fn optional(list: &[&str]) -> Option<Vec<Bytes>> {
    (!list.is_empty()).then(|| names(list))
}

fn bytes_value(message: impl AsRef<[u8]>) -> PhpValue {
    PhpValue::Str(Bytes::copy_from_slice(message.as_ref()))
}

/// A scalar as text (uids and groups come back as ints when numeric, spec 7.3).
fn scalar_text(value: &PhpValue) -> Option<String> {
    scalar_to_string(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The values of a PHP array as text, in order (non-arrays give nothing).
fn values_text(value: &PhpValue) -> Vec<String> {
    let empty = PhpArray::new();
    let array = match value {
        PhpValue::Array(a) => a,
        _ => &empty,
    };
    array.iter().filter_map(|(_, v)| scalar_text(v)).collect()
}
