//! The snapshot as the writing thread sees it. Reading the repository is async (the streams
//! of [`StoredBase`]); writing a package or a SQLite database is blocking I/O and CPU work
//! (rendering, deflate, SQLite), done on one blocking thread. `Source` hands each stream over
//! as a blocking iterator: a tokio task, on the runtime the export was started from, reads
//! ahead and sends what is ready through a bounded channel, so that reading and writing
//! overlap and at most two batches wait. Dropping the iterator stops the task.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::runtime::Handle;

use crate::airtable::Record;
use crate::stored::{StoredBase, StoredError, StoredFile, StoredTable};

/// Records handed to the writer at once (at most two such batches wait).
const RECORDS_AHEAD: usize = 256;

/// Attachment blobs handed to the writer at once (at most two such batches wait, besides the
/// reader's own read-ahead): at most 4 MiB each.
const BLOBS_AHEAD: usize = 1;

/// The snapshot as the writing thread sees it: blocking iterators over its records and bytes,
/// fed by tokio tasks through bounded channels.
pub(super) struct Source {
    pub(super) base: StoredBase,
    pub(super) rt: Handle,
}

impl Source {
    pub(super) fn records(
        &self,
        table: &StoredTable,
    ) -> impl Iterator<Item = Result<Record, StoredError>> {
        forward(&self.rt, self.base.records(table), RECORDS_AHEAD)
    }

    pub(super) fn attachment(&self, id: &str) -> Result<Option<StoredFile>, StoredError> {
        self.rt.block_on(self.base.attachment(id))
    }

    pub(super) fn file_bytes(
        &self,
        file: &StoredFile,
    ) -> impl Iterator<Item = Result<Bytes, StoredError>> {
        forward(&self.rt, self.base.file_bytes(file), BLOBS_AHEAD)
    }
}

/// A stream read by a tokio task, handed to a blocking thread as an iterator: items travel
/// in batches of what is ready (up to `capacity`), so a stream of many small items does not
/// cost a thread wake-up each. At most two batches wait in the channel. Dropping the
/// iterator stops the task at its next batch.
fn forward<S>(rt: &Handle, stream: S, capacity: usize) -> impl Iterator<Item = S::Item> + use<S>
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
    std::iter::from_fn(move || rx.blocking_recv()).flatten()
}
