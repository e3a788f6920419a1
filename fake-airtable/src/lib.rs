//! A strict, stateful fake of the Airtable Web API, used by airback's tests, its benchmarks,
//! `airback demo` and `airback fake-airtable`. It serves the same routes, shapes and errors as
//! the real service, and is at least as strict wherever the real behaviour is unconfirmed.
//!
//! It is a crate of its own (`airback-fake`, in `fake-airtable/` of airback's workspace) and
//! depends on nothing from airback: the product depends on it behind its default `fake`
//! feature and, for tests and benchmarks, as a dev-dependency.
//!
//! [`FakeAirtable::start`] binds a real HTTP server on `127.0.0.1:0` with a generated world
//! (see [`Preset`]). The same server stands in for both hosts: the API (`/v0/...`) and the
//! attachment content host (`/attachments/...`); `uploadAttachment` is served under `/v0` as
//! on `content.airtable.com`. Tests can read and change the state directly, read counters, and
//! inject faults ([`Faults`]).
//!
//! # Routes
//!
//! ```text
//! GET    /v0/meta/whoami
//! GET    /v0/meta/bases
//! POST   /v0/meta/bases                                        create base in a workspace
//! GET    /v0/meta/bases/{base}/tables[?include=visibleFieldIds]
//! POST   /v0/meta/bases/{base}/tables                          create table
//! PATCH  /v0/meta/bases/{base}/tables/{tableIdOrName}          update table
//! POST   /v0/meta/bases/{base}/tables/{tableId}/fields         create field
//! PATCH  /v0/meta/bases/{base}/tables/{tableId}/fields/{field} update field
//! GET    /v0/{base}/{tableIdOrName}                            list records
//! POST   /v0/{base}/{tableIdOrName}/listRecords                list records, options in the body
//! POST   /v0/{base}/{tableIdOrName}                            create records (≤ 10, or one)
//! PATCH  /v0/{base}/{tableIdOrName}   PUT likewise             update / upsert records (≤ 10)
//! DELETE /v0/{base}/{tableIdOrName}?records[]=…                delete records (≤ 10)
//! GET    /v0/{base}/{tableIdOrName}/{record}                   get record
//! PATCH  /v0/{base}/{tableIdOrName}/{record}  PUT likewise     update record
//! DELETE /v0/{base}/{tableIdOrName}/{record}                   delete record
//! GET    /v0/{base}/{tableIdOrName}/{record}/comments          list comments, newest first (pages ≤ 100)
//! POST   /v0/{base}/{tableIdOrName}/{record}/comments          create a comment as the token's user
//! POST   /v0/{base}/{record}/{field}/uploadAttachment          the content host's upload route
//! GET    /attachments/{epoch}/{expires_ms}/{att}/{variant}/{sig}  attachment content (not rate-limited)
//! ```
//!
//! Anything else is 404 `{"error":"NOT_FOUND"}`. Where the real behaviour is unconfirmed the
//! fake picks the stricter reading: unknown query parameters and body properties are 422, a
//! missing base is 403 on data routes and 404 `{"error":{"type":"NOT_FOUND"}}` on meta routes,
//! uploads over 5,000,000 decoded bytes are 413, an expired attachment URL is 410, link fields
//! cannot be created inline with a table, create-field requires complete write options, and
//! 429s carry no `Retry-After` unless [`FakeOptions::retry_after_header`] is set.
//!
//! Modules: `state` (the world), `generate` (presets), `render` (records and schema as JSON,
//! computed values), `write` (record writes), `comments` (record comments), `schema`
//! (meta-API writes), `listing` (pages and iterators), `formula`, `content` (attachment bytes
//! and URLs), `ratelimit`, `faults`, `counters`, `server` (routes), `ids`, `time`,
//! `api_error`.

mod api_error;
mod comments;
mod content;
mod counters;
mod faults;
mod formula;
mod generate;
mod ids;
mod listing;
mod ratelimit;
mod render;
mod schema;
mod server;
mod state;
mod time;
mod write;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use serde_json::{Map, Value, json};

pub use counters::{FakeCounters, Route};
pub use faults::{FaultSpecError, Faults};
pub use generate::LargeParams;
pub use ids::{ID_LEN, is_airtable_id};
pub use server::UPLOAD_LIMIT_BYTES;

use content::{Scratch, UrlSigner};
use counters::Counters;
use faults::FaultInjector;
use listing::Iterators;
use ratelimit::RateLimiter;
use render::RenderOptions;
use server::{ServerSettings, Shared, TokenGrant, lock, read, write};
use state::{Attachment, AttachmentState, ContentEntry, World};

/// Which world the fake starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// One base as Airtable creates it: "Table 1" with its default fields and 3 empty records.
    Empty,
    /// A small base showing every feature.
    #[default]
    Demo,
    /// Every field type and every awkward case (record comments too).
    Zoo,
    /// A big base sized by [`LargeParams`].
    Large,
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(text: &str) -> Result<Preset, String> {
        match text {
            "empty" => Ok(Preset::Empty),
            "demo" => Ok(Preset::Demo),
            "zoo" => Ok(Preset::Zoo),
            "large" => Ok(Preset::Large),
            other => Err(format!(
                "unknown preset `{other}` (expected empty, demo, zoo or large)"
            )),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preset::Empty => "empty",
            Preset::Demo => "demo",
            Preset::Zoo => "zoo",
            Preset::Large => "large",
        })
    }
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub preset: Preset,
    /// Seeds ids, generated data, record order, the token and attachment bytes.
    pub seed: u64,
    /// Requests per second per base; `None` turns the limit off.
    pub rate_limit: Option<u32>,
    /// Requests per second per token owner, across bases; `None` turns the limit off.
    pub token_rate_limit: Option<u32>,
    /// How long a base (or token) stays locked after going over its limit.
    pub penalty: Duration,
    /// How long attachment URLs stay valid.
    pub url_ttl: Duration,
    /// How long a list iterator (`offset`) survives without being used.
    pub iterator_ttl: Duration,
    pub faults: Faults,
    /// Sizes of the large preset.
    pub large: LargeParams,
    /// Send `Retry-After` on 429 (the real service is not known to; off by default).
    pub retry_after_header: bool,
    /// How long after a `{url}` write the fake starts fetching it.
    pub url_fetch_delay: Duration,
}

impl Default for FakeOptions {
    /// Demo preset, seed 1, 5 requests/s per base, 50 per token, 30 s penalty, URLs valid
    /// 2 h, iterators 2 min, no faults.
    fn default() -> FakeOptions {
        FakeOptions {
            preset: Preset::Demo,
            seed: 1,
            rate_limit: Some(5),
            token_rate_limit: Some(50),
            penalty: Duration::from_secs(30),
            url_ttl: Duration::from_secs(2 * 60 * 60),
            iterator_ttl: Duration::from_secs(120),
            faults: Faults::default(),
            large: LargeParams::default(),
            retry_after_header: false,
            url_fetch_delay: Duration::from_millis(100),
        }
    }
}

impl FakeOptions {
    /// Default options with no rate limits, for tests that are not about limits and for
    /// overhead benchmarks.
    pub fn unlimited(preset: Preset) -> FakeOptions {
        FakeOptions {
            preset,
            rate_limit: None,
            token_rate_limit: None,
            ..FakeOptions::default()
        }
    }
}

/// A base's id and name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BaseInfo {
    pub id: String,
    pub name: String,
}

/// Errors of the fake's Rust API (not of its HTTP API, which answers like Airtable).
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("cannot bind the fake Airtable server to `{addr}`")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the fake Airtable server stopped with an error")]
    Serve(#[source] std::io::Error),
    #[error("generating the `{0}` preset failed")]
    Generate(Preset),
    #[error("unknown base `{0}`")]
    UnknownBase(String),
    #[error("unknown table `{0}`")]
    UnknownTable(String),
    #[error("unknown record `{0}`")]
    UnknownRecord(String),
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// The write was refused as the API would refuse it.
    #[error("rejected with {status} {error_type}: {message}")]
    Rejected {
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("cannot store attachment content")]
    Storage(#[source] std::io::Error),
}

impl From<api_error::ApiError> for FakeError {
    fn from(error: api_error::ApiError) -> FakeError {
        FakeError::Rejected {
            status: error.status.as_u16(),
            error_type: error.error_type(),
            message: error.message(),
        }
    }
}

/// A running fake Airtable.
pub struct FakeAirtable {
    shared: Arc<Shared>,
    token: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), std::io::Error>>>,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for FakeAirtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAirtable")
            .field("url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

/// The personal access token of a seed: `pat` + 14 characters, a dot, 64 hex digits.
fn token_for_seed(seed: u64) -> String {
    let mut ids = ids::IdGen::new(seed ^ 0x70_6b_65_6e);
    let id = ids.next(ids::IdKind::Base);
    let secret = blake3::hash(format!("airback fake token {seed}").as_bytes()).to_hex();
    format!("pat{}.{}", &id[3..], secret)
}

fn build_world(options: &FakeOptions) -> World {
    let mut world = World::new(options.seed);
    match options.preset {
        Preset::Empty => {
            generate::add_default_base(&mut world, "Empty base");
        }
        Preset::Demo => {
            generate::demo(&mut world);
        }
        Preset::Zoo => {
            generate::zoo(&mut world);
        }
        Preset::Large => {
            generate::large(&mut world, &options.large);
        }
    }
    world
}

impl FakeAirtable {
    /// Starts the fake on `127.0.0.1` with a free port.
    pub async fn start(options: FakeOptions) -> Result<FakeAirtable, FakeError> {
        FakeAirtable::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        options: FakeOptions,
    ) -> Result<FakeAirtable, FakeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| FakeError::Bind { addr, source })?;
        let mut bound = listener
            .local_addr()
            .map_err(|source| FakeError::Bind { addr, source })?;
        if bound.ip().is_unspecified() {
            bound.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let preset = options.preset;
        let generator_options = options.clone();
        let world = tokio::task::spawn_blocking(move || build_world(&generator_options))
            .await
            .map_err(|_| FakeError::Generate(preset))?;
        let token = token_for_seed(options.seed);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|error| FakeError::Serve(std::io::Error::other(error)))?;
        let shared = Arc::new(Shared {
            world: RwLock::new(world),
            iterators: Mutex::new(Iterators::new(options.seed)),
            limiter: Mutex::new(RateLimiter::new(
                options.rate_limit,
                options.token_rate_limit,
                options.penalty,
            )),
            faults: Mutex::new(FaultInjector::new(options.faults.clone())),
            counters: Counters::default(),
            signer: UrlSigner::new(options.seed),
            scratch: Scratch::new(),
            tokens: RwLock::new(vec![TokenGrant {
                token: token.clone(),
                scopes: server::SCOPES
                    .iter()
                    .map(|scope| (*scope).to_owned())
                    .collect(),
                bases: None,
            }]),
            settings: ServerSettings {
                url_ttl: options.url_ttl,
                iterator_ttl: options.iterator_ttl,
                retry_after_header: options.retry_after_header,
                url_fetch_delay: options.url_fetch_delay,
            },
            base_url: format!("http://{bound}"),
            billing_exceeded: AtomicBool::new(false),
            http,
            pending_fetches: AtomicUsize::new(0),
            fetch_done: tokio::sync::Notify::new(),
        });
        let router = Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_signal.await;
                })
                .await
        });
        tracing::debug!(url = %shared.base_url, preset = %preset, "fake Airtable started");
        Ok(FakeAirtable {
            shared,
            token,
            shutdown: Some(shutdown),
            task: Some(task),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// `http://127.0.0.1:PORT`: the API base URL and the content (upload) base URL.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The valid personal access token, with every scope and every base.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// Every base, in creation order.
    pub fn bases(&self) -> Vec<BaseInfo> {
        read(&self.shared.world)
            .bases
            .iter()
            .map(|base| BaseInfo {
                id: base.id.clone(),
                name: base.name.clone(),
            })
            .collect()
    }

    /// The workspace where bases can be created with `POST /v0/meta/bases`.
    pub fn workspace_id(&self) -> String {
        read(&self.shared.world).workspaces[0].id.clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> FakeCounters {
        self.shared.counters.snapshot()
    }

    /// Replaces the fault set (and restarts its generator and triggers).
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = FaultInjector::new(faults);
    }

    /// The fault set in force.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).faults().clone()
    }

    /// Makes every outstanding `offset` fail with `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`.
    pub fn expire_iterators(&self) {
        lock(&self.shared.iterators).expire_all();
    }

    /// Makes every attachment URL issued so far expired.
    pub fn expire_attachment_urls(&self) {
        self.shared.signer.expire_all();
    }

    /// Puts a base into its rate-limit penalty now: every request to it gets 429 until the
    /// penalty ends, even when rate limits are off.
    pub fn trigger_rate_limit(&self, base_id: &str) {
        lock(&self.shared.limiter).punish_base(base_id, std::time::Instant::now());
    }

    /// While on, data routes answer 429 `PUBLIC_API_BILLING_LIMIT_EXCEEDED` (meta routes work).
    pub fn set_billing_limit_exceeded(&self, exceeded: bool) {
        self.shared
            .billing_exceeded
            .store(exceeded, Ordering::SeqCst);
    }

    /// Adds a base as Airtable creates one: "Table 1" with Name, Notes, Assignee, Status and
    /// Attachments, and three empty records.
    pub fn add_empty_base(&self, name: &str) -> BaseInfo {
        let mut world = write(&self.shared.world);
        let index = generate::add_default_base(&mut world, name);
        BaseInfo {
            id: world.bases[index].id.clone(),
            name: world.bases[index].name.clone(),
        }
    }

    /// Issues another token with only `scopes` (e.g. `"data.records:read"`) and, if given, only
    /// `bases`; for testing 403s.
    pub fn add_token(&self, scopes: &[&str], bases: Option<&[&str]>) -> String {
        let mut tokens = write(&self.shared.tokens);
        let token = token_for_seed(
            read(&self.shared.world)
                .seed
                .wrapping_add(1 + tokens.len() as u64),
        );
        tokens.push(TokenGrant {
            token: token.clone(),
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            bases: bases.map(|bases| bases.iter().map(|base| (*base).to_owned()).collect()),
        });
        token
    }

    /// The schema as `GET /v0/meta/bases/{base}/tables` returns it, or `Value::Null` for an
    /// unknown base.
    pub fn schema_json(&self, base_id: &str) -> Value {
        let world = read(&self.shared.world);
        match world.base_index(base_id) {
            Some(index) => render::schema_json(&world.bases[index], false),
            None => Value::Null,
        }
    }

    /// Every record of a table (by id or name) in creation order, as the API returns them with
    /// `returnFieldsByFieldId=true`, attachments with fresh URLs. Empty for an unknown table.
    pub fn records_json(&self, base_id: &str, table_id: &str) -> Vec<Value> {
        let world = read(&self.shared.world);
        let Some(base_index) = world.base_index(base_id) else {
            return Vec::new();
        };
        let Some(table_index) = world.bases[base_index].table_index(table_id) else {
            return Vec::new();
        };
        let reader = self.shared.reader(&world, base_index);
        let options = RenderOptions {
            by_field_id: true,
            ..RenderOptions::default()
        };
        reader.base.tables[table_index]
            .live()
            .map(|record| reader.record_json(table_index, record, &options))
            .collect()
    }

    /// The number of records in a table (by id or name).
    pub fn record_count(&self, base_id: &str, table_id: &str) -> Option<usize> {
        let world = read(&self.shared.world);
        let base = &world.bases[world.base_index(base_id)?];
        Some(base.tables[base.table_index(table_id)?].live_records)
    }

    fn locate(world: &World, base_id: &str, table_id: &str) -> Result<(usize, usize), FakeError> {
        let base_index = world
            .base_index(base_id)
            .ok_or_else(|| FakeError::UnknownBase(base_id.to_owned()))?;
        let table_index = world.bases[base_index]
            .table_index(table_id)
            .ok_or_else(|| FakeError::UnknownTable(table_id.to_owned()))?;
        Ok((base_index, table_index))
    }

    /// Changes cells of one record as a PATCH without typecast would (the same validation,
    /// links kept symmetric, `{url}` attachments fetched), bypassing rate limits and faults.
    pub fn update_record_fields(
        &self,
        base_id: &str,
        table_id: &str,
        record_id: &str,
        fields: Map<String, Value>,
    ) -> Result<(), FakeError> {
        let fetches = {
            let mut world = write(&self.shared.world);
            let (base_index, table_index) = FakeAirtable::locate(&world, base_id, table_id)?;
            if world.bases[base_index].tables[table_index]
                .record(record_id)
                .is_none()
            {
                return Err(FakeError::UnknownRecord(record_id.to_owned()));
            }
            let context = write::WriteContext {
                typecast: false,
                now_ms: time::now_ms(),
                user: world.owner,
            };
            let input = write::UpdateInput {
                id: Some(record_id.to_owned()),
                fields,
            };
            write::update_records(
                &mut world,
                base_index,
                table_index,
                &[input],
                false,
                None,
                context,
            )?
            .fetches
        };
        for fetch in fetches {
            self.shared.pending_fetches.fetch_add(1, Ordering::SeqCst);
            self.runtime
                .spawn(server::fetch_attachment_task(self.shared.clone(), fetch));
        }
        Ok(())
    }

    /// Deletes a field the way a user does in Airtable's UI (the Web API cannot): the field
    /// and every cell of it go. Link fields and primary fields are refused. Formulas and
    /// rollups name fields by id, so the other fields keep working (those that read this one
    /// then read an empty value).
    pub fn delete_field(
        &self,
        base_id: &str,
        table_id: &str,
        field_id: &str,
    ) -> Result<(), FakeError> {
        let mut world = write(&self.shared.world);
        let (base_index, table_index) = FakeAirtable::locate(&world, base_id, table_id)?;
        let table = &mut world.bases[base_index].tables[table_index];
        let slot = table
            .fields
            .iter()
            .position(|f| f.id == field_id)
            .filter(|&slot| {
                table.fields[slot].linked_table_id().is_none() && table.primary_field_id != field_id
            })
            .ok_or_else(|| FakeError::UnknownField(field_id.to_owned()))?;
        remove_field_slot(table, slot);
        Ok(())
    }

    /// Deletes a table the way a user does in Airtable's UI (the Web API cannot): the table
    /// and its records go, and so do the link fields of other tables that point at it.
    pub fn delete_table(&self, base_id: &str, table_id: &str) -> Result<(), FakeError> {
        let mut world = write(&self.shared.world);
        let (base_index, table_index) = FakeAirtable::locate(&world, base_id, table_id)?;
        let base = &mut world.bases[base_index];
        let table_id = base.tables[table_index].id.clone();
        base.tables.remove(table_index);
        for table in &mut base.tables {
            while let Some(slot) = table
                .fields
                .iter()
                .position(|f| f.linked_table_id() == Some(table_id.as_str()))
            {
                remove_field_slot(table, slot);
            }
        }
        Ok(())
    }

    /// Appends an attachment with `content` to a cell, as `uploadAttachment` would but without
    /// its size limit.
    pub fn add_attachment(
        &self,
        base_id: &str,
        table_id: &str,
        record_id: &str,
        field_id: &str,
        filename: &str,
        content: Vec<u8>,
    ) -> Result<(), FakeError> {
        let size = content.len() as u64;
        let dimensions = content::png_dimensions(&content);
        let mime = content::guess_mime(filename).to_owned();
        let source = self
            .shared
            .scratch
            .store(content.into())
            .map_err(FakeError::Storage)?;
        let mut world = write(&self.shared.world);
        let (base_index, table_index) = FakeAirtable::locate(&world, base_id, table_id)?;
        let table = &world.bases[base_index].tables[table_index];
        if table.record(record_id).is_none() {
            return Err(FakeError::UnknownRecord(record_id.to_owned()));
        }
        let slot = table
            .field_slot_by_key(field_id)
            .ok_or_else(|| FakeError::UnknownField(field_id.to_owned()))?;
        let attachment_id = world.ids.next(ids::IdKind::Attachment);
        world.content.insert(
            attachment_id.clone(),
            Arc::new(ContentEntry {
                size,
                mime: mime.clone(),
                source,
            }),
        );
        let attachment = Attachment {
            id: attachment_id,
            filename: filename.to_owned(),
            mime,
            state: AttachmentState::Ready {
                size,
                width: dimensions.map(|(width, _)| width),
                height: dimensions.map(|(_, height)| height),
            },
        };
        write::append_attachment(
            &mut world,
            base_index,
            table_index,
            record_id,
            slot,
            attachment,
            time::now_ms(),
        )?;
        Ok(())
    }

    /// Adds a comment to a record as `author` (a user id or email; `None`: the token's user),
    /// created now, bypassing rate limits and faults: the comment as the API returns it.
    /// Mentions are written `@[usrXXXXXXXXXXXXXX]` (see [`FakeAirtable::users`]).
    pub fn add_comment(
        &self,
        base_id: &str,
        table_id: &str,
        record_id: &str,
        author: Option<&str>,
        text: &str,
    ) -> Result<Value, FakeError> {
        self.add_reply(base_id, table_id, record_id, author, text, None)
    }

    /// [`FakeAirtable::add_comment`] as a reply to comment `parent` of the same record.
    pub fn add_reply(
        &self,
        base_id: &str,
        table_id: &str,
        record_id: &str,
        author: Option<&str>,
        text: &str,
        parent: Option<&str>,
    ) -> Result<Value, FakeError> {
        let mut world = write(&self.shared.world);
        let (base_index, table_index) = FakeAirtable::locate(&world, base_id, table_id)?;
        let table = &world.bases[base_index].tables[table_index];
        if table.record(record_id).is_none() {
            return Err(FakeError::UnknownRecord(record_id.to_owned()));
        }
        let author = match author {
            None => world.owner,
            Some(user) => world
                .user_index(user)
                .ok_or_else(|| FakeError::UnknownUser(user.to_owned()))?,
        };
        let existing = table.comments.get(record_id).map_or(&[][..], Vec::as_slice);
        let new = comments::parse_create(
            &json!({ "text": text, "parentCommentId": parent }),
            existing,
        )?;
        let comment = comments::add(
            &mut world,
            base_index,
            table_index,
            record_id,
            author,
            new,
            time::now_ms(),
        );
        Ok(comments::comment_json(&world, &comment))
    }

    /// Deletes a comment of a record (as someone might in Airtable's interface); false when
    /// there is no such comment.
    pub fn delete_comment(
        &self,
        base_id: &str,
        table_id: &str,
        record_id: &str,
        comment_id: &str,
    ) -> bool {
        let mut world = write(&self.shared.world);
        let Ok((base_index, table_index)) = FakeAirtable::locate(&world, base_id, table_id) else {
            return false;
        };
        let Some(list) = world.bases[base_index].tables[table_index]
            .comments
            .get_mut(record_id)
        else {
            return false;
        };
        let before = list.len();
        list.retain(|c| c.id != comment_id);
        before != list.len()
    }

    /// A record's comments as the API returns them, oldest first (the API lists newest
    /// first). Empty for an unknown base, table or record.
    pub fn comments(&self, base_id: &str, table_id: &str, record_id: &str) -> Vec<Value> {
        let world = read(&self.shared.world);
        let Ok((base_index, table_index)) = FakeAirtable::locate(&world, base_id, table_id) else {
            return Vec::new();
        };
        world.bases[base_index].tables[table_index]
            .comments
            .get(record_id)
            .map(|list| {
                list.iter()
                    .map(|c| comments::comment_json(&world, c))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every record of a table (by id or name) that has comments, with how many, in record
    /// creation order.
    pub fn comment_counts(&self, base_id: &str, table_id: &str) -> Vec<(String, usize)> {
        let world = read(&self.shared.world);
        let Ok((base_index, table_index)) = FakeAirtable::locate(&world, base_id, table_id) else {
            return Vec::new();
        };
        let table = &world.bases[base_index].tables[table_index];
        table
            .live()
            .map(|r| (r.id.clone(), table.comment_count(&r.id)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The fake's users as `{id, email, name}`; the first is the token's user, the author of
    /// everything written through the API.
    pub fn users(&self) -> Vec<Value> {
        read(&self.shared.world)
            .users
            .iter()
            .map(state::User::to_json)
            .collect()
    }

    /// The bytes of an attachment, read whole (avoid for big ones).
    pub fn attachment_content(&self, attachment_id: &str) -> Option<Vec<u8>> {
        let (entry, seed) = {
            let world = read(&self.shared.world);
            (world.content.get(attachment_id).cloned()?, world.seed)
        };
        content::read_content(&entry.source, seed, entry.size).ok()
    }

    /// Waits until every `{url}` attachment written so far has been fetched (or has failed).
    pub async fn wait_for_url_fetches(&self) {
        loop {
            let notified = self.shared.fetch_done.notified();
            if self.shared.pending_fetches.load(Ordering::SeqCst) == 0 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// The line `serve_standalone` prints: `{"url","token","bases":[{"id","name"}],"workspace"}`.
    pub fn banner_json(&self) -> Value {
        json!({
            "url": self.url(),
            "token": self.token(),
            "bases": self.bases(),
            "workspace": self.workspace_id(),
        })
    }

    /// Stops serving: open connections are closed, the port is released.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }

    /// Runs until the server task ends (it only ends on shutdown or an I/O error).
    async fn serve_until_stopped(&mut self) -> Result<(), FakeError> {
        match self.task.as_mut() {
            Some(task) => match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(FakeError::Serve(error)),
                Err(join) => Err(FakeError::Serve(std::io::Error::other(join))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for FakeAirtable {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// `airback fake-airtable`: binds `addr`, prints ONE JSON line
/// `{"url":…,"token":…,"bases":[{"id","name"}],"workspace":…}` to stdout, then serves until
/// Ctrl-C or SIGTERM.
pub async fn serve_standalone(addr: SocketAddr, options: FakeOptions) -> Result<(), FakeError> {
    use std::io::Write as _;
    let mut fake = FakeAirtable::start_on(addr, options).await?;
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", fake.banner_json());
        let _ = stdout.flush();
    }
    let terminate = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
        result = fake.serve_until_stopped() => return result,
    }
    fake.stop().await;
    Ok(())
}

/// Removes the field in `slot` and its cells; later slots move down one.
fn remove_field_slot(table: &mut state::Table, slot: usize) {
    table.fields.remove(slot);
    let slot = slot as u16;
    for record in table.records.iter_mut().flatten() {
        record.cells.retain(|(s, _)| *s != slot);
        for (s, _) in &mut record.cells {
            if *s > slot {
                *s -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_personal_access_tokens() {
        let token = token_for_seed(1);
        let (id, secret) = token.split_once('.').unwrap();
        assert!(is_airtable_id(&format!("app{}", &id[3..]), "app"));
        assert!(id.starts_with("pat") && id.len() == 17);
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(token, token_for_seed(1));
    }

    #[test]
    fn presets_parse() {
        for preset in [Preset::Empty, Preset::Demo, Preset::Zoo, Preset::Large] {
            assert_eq!(preset.to_string().parse::<Preset>(), Ok(preset));
        }
        assert!("huge".parse::<Preset>().is_err());
    }
}
