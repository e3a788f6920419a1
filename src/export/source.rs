//! The snapshot as the writing thread sees it. Reading the repository is async (the streams
//! of [`StoredBase`]); writing a package or a SQLite database is blocking I/O and CPU work
//! (rendering, deflate, SQLite), done on one blocking thread. `Source` hands each stream over
//! as a blocking iterator: a tokio task, on the runtime the export was started from, reads
//! ahead and sends what is ready through a bounded channel, so that reading and writing
//! overlap and at most two batches wait. Dropping the iterator stops the task; once the
//! export is cancelled (`stop` set), every iterator ends and [`Source::check_stop`] fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::runtime::Handle;

use super::ExportError;
use crate::airtable::Record;
use crate::stored::{RecordComments, StoredBase, StoredError, StoredFile, StoredTable};

/// Records handed to the writer at once (at most two such batches wait).
const RECORDS_AHEAD: usize = 256;

/// Attachment blobs handed to the writer at once (at most two such batches wait, besides the
/// reader's own read-ahead): at most 4 MiB each.
const BLOBS_AHEAD: usize = 1;

/// The snapshot as the writing thread sees it: blocking iterators over its records and bytes,
/// fed by tokio tasks through bounded channels. Once `stop` is set (the export was cancelled),
/// every iterator ends early and [`Source::check_stop`] fails.
pub(super) struct Source {
    pub(super) base: StoredBase,
    pub(super) rt: Handle,
    pub(super) stop: Arc<AtomicBool>,
}

impl Source {
    pub(super) fn records(
        &self,
        table: &StoredTable,
    ) -> impl Iterator<Item = Result<Record, StoredError>> {
        forward(
            &self.rt,
            self.base.records(table),
            RECORDS_AHEAD,
            &self.stop,
        )
    }

    /// The comments of table `table_id`, one record at a time, sorted by record id.
    pub(super) fn comments(
        &self,
        table_id: &str,
    ) -> impl Iterator<Item = Result<RecordComments, StoredError>> {
        forward(
            &self.rt,
            self.base.comments(table_id),
            RECORDS_AHEAD,
            &self.stop,
        )
    }

    /// Read by a task (not `Handle::block_on`): a runtime shutting down drops the task, and
    /// this returns an error rather than panicking.
    pub(super) fn attachment(&self, id: &str) -> Result<Option<StoredFile>, ExportError> {
        self.check_stop()?;
        let (base, owned_id) = (self.base.clone(), id.to_owned());
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.rt.spawn(async move {
            let _ = tx.send(base.attachment(&owned_id).await);
        });
        let found = rx.blocking_recv().map_err(|_| ExportError::Interrupted)?;
        found.map_err(ExportError::reading(format!("attachment {id}")))
    }

    pub(super) fn file_bytes(
        &self,
        file: &StoredFile,
    ) -> impl Iterator<Item = Result<Bytes, StoredError>> {
        forward(
            &self.rt,
            self.base.file_bytes(file),
            BLOBS_AHEAD,
            &self.stop,
        )
    }

    /// Fails once the export is cancelled.
    pub(super) fn check_stop(&self) -> Result<(), ExportError> {
        if self.stop.load(Ordering::Relaxed) {
            Err(ExportError::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// A stream read by a tokio task, handed to a blocking thread as an iterator: items travel
/// in batches of what is ready (up to `capacity`), so a stream of many small items does not
/// cost a thread wake-up each. At most two batches wait in the channel. Dropping the
/// iterator stops the task at its next batch; once `stop` is set, the iterator ends.
fn forward<S>(
    rt: &Handle,
    stream: S,
    capacity: usize,
    stop: &Arc<AtomicBool>,
) -> impl Iterator<Item = S::Item> + use<S>
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<S::Item>>(2);
    rt.spawn(async move {
        let mut batches = std::pin::pin!(stream.ready_chunks(capacity));
        while let Some(batch) = batches.next().await {
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    let stop = stop.clone();
    std::iter::from_fn(move || {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        rx.blocking_recv()
    })
    .flatten()
}
