//! The Airtable Web API client: token handling, pacing at the rate-limit ceiling, retries, and
//! typed errors. Everything that talks HTTP to Airtable goes through here.
//!
//! The main type is [`Client`], built from a [`Token`] and [`ClientOptions`]. It is cheap to
//! clone, and all clones share one pacer, so any number of concurrent tasks stay together under
//! Airtable's limits of 5 requests per second per base and 50 per token (see `pacer` for how a
//! strict server's "no one-second window over the limit" rule is met at about 4.5 requests per
//! second). Failures are retried where that is safe (see `retry`); what is left becomes an
//! [`AirtableError`] whose message says what to do.
//!
//! - Reads: [`Client::list_bases`], [`Client::base_schema`] (raw JSON plus a typed view),
//!   [`Client::list_records`] (a [`RecordPager`], page by page or as a stream, restarting by
//!   itself when Airtable expires the listing iterator), [`Client::get_record`],
//!   [`Client::list_comments`].
//! - Attachments: [`Client::download`] streams a file; [`Client::download_attachment`] also
//!   refreshes an expired URL by re-reading the record.
//! - Writes: [`Client::create_records`] and [`Client::update_records`] (batches of 10),
//!   [`Client::create_table`], [`Client::update_table`], [`Client::create_field`],
//!   [`Client::update_field`], [`Client::create_base`], [`Client::upload_attachment`],
//!   [`Client::create_comment`].
//! - [`Client::counters`] reports requests, retries, 429s, errors by status and bytes downloaded.
//!
//! Cell values are never interpreted: records keep them as raw JSON, keyed by field id.
//!
//! ```no_run
//! # async fn demo() -> Result<(), airback::airtable::AirtableError> {
//! use airback::airtable::{Client, ClientOptions, ListRecordsOptions, Token};
//!
//! let token = Token::from_file("/etc/airback/airtable-token")?;
//! let client = Client::new(token, ClientOptions::default())?;
//! let schema = client.base_schema("appXXXXXXXXXXXXXX").await?;
//! for table in &schema.tables {
//!     let mut pager = client.list_records("appXXXXXXXXXXXXXX", &table.id, ListRecordsOptions::default());
//!     while let Some(page) = pager.next_page().await? {
//!         println!("{}: {} records", table.name, page.len());
//!     }
//! }
//! println!("{:?}", client.counters());
//! # Ok(())
//! # }
//! ```

mod client;
mod counters;
mod download;
mod error;
mod model;
mod options;
pub(crate) mod pacer;
mod reads;
pub(crate) mod retry;
mod token;
mod writes;

pub use client::Client;
pub use counters::ClientCounters;
pub use download::Download;
pub use error::{AirtableError, ApiError};
pub use model::{
    Attachment, Base, BaseSchema, CreatedBase, FieldSchema, ListRecordsOptions,
    NameDescriptionUpdate, NewField, NewRecord, NewTable, Record, RecordUpdate, TableSchema,
    ViewSchema, WhoAmI, attachment_id,
};
pub use options::ClientOptions;
pub use reads::{MAX_COMMENTS_PAGE_SIZE, MAX_PAGE_SIZE, MAX_URL_LEN, RecordPager};
pub use token::{Token, TokenError};
pub use writes::{MAX_RECORDS_PER_WRITE, MAX_UPLOAD_BYTES};
