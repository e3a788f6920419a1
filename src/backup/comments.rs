//! Record comments on their way into a snapshot: what the comment reads of a run gathered, and
//! the `comments/` folder made of it (docs/FORMAT.md, "Airtable snapshots").
//!
//! Only records whose listing said `commentCount > 0` are read, one request per page of 100
//! comments. Each table with comments gets one file of canonical JSON lines, one per record,
//! sorted by record id: `{"comments":[…],"record":"rec…"}`, the comments oldest first, each
//! object exactly as the API sent it (keys sorted). The file goes through the chunker like a
//! table file, so a record whose comments did not change gives the same bytes, and the same
//! blobs, as in the previous snapshot.
//!
//! The first read that Airtable refuses with 403 means the token lacks the
//! `data.recordComments:read` scope (listing the same table's records just worked): no more
//! comments are read, and the snapshot holds none and says why.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::airtable::AirtableError;
use crate::layout::{self, CommentsDirMeta, CommentsMeta, CommentsSkipped};
use crate::repo::pack::BlobKind;
use crate::repo::snapshot::Node;
use crate::repo::{BlobWriter, RepoError};

/// Records whose comments are read at once (the client paces them with the listing anyway).
pub(super) const CONCURRENCY: usize = 4;

/// The comments a run read, by table id and record id; what could not be read; whether
/// comments are skipped.
#[derive(Debug, Default)]
pub(super) struct Comments {
    by_table: BTreeMap<String, BTreeMap<String, Vec<Value>>>,
    /// Why no comments are backed up (`None`: they are).
    pub(super) skipped: Option<CommentsSkipped>,
    /// Records whose comments could not be read, described for people.
    pub(super) problems: Vec<String>,
}

/// Locks the run's comments; a task that panicked leaves them usable.
pub(super) fn lock(comments: &Mutex<Comments>) -> MutexGuard<'_, Comments> {
    comments.lock().unwrap_or_else(|e| e.into_inner())
}

impl Comments {
    /// Nothing read yet; `wanted` false makes them skipped as turned off.
    pub(super) fn new(wanted: bool) -> Comments {
        Comments {
            skipped: (!wanted).then_some(CommentsSkipped::TurnedOff),
            ..Comments::default()
        }
    }

    /// Whether comments are still to be read.
    pub(super) fn wanted(&self) -> bool {
        self.skipped.is_none()
    }

    /// Takes the outcome of reading the comments of `record` in `table`.
    pub(super) fn read(
        &mut self,
        table: &str,
        record: &str,
        result: Result<Vec<Value>, AirtableError>,
    ) {
        if !self.wanted() {
            return;
        }
        match result {
            Ok(comments) if comments.is_empty() => {}
            Ok(comments) => {
                self.by_table
                    .entry(table.to_owned())
                    .or_default()
                    .insert(record.to_owned(), comments);
            }
            Err(AirtableError::Forbidden { .. }) => {
                self.skipped = Some(CommentsSkipped::NoScope);
                self.by_table.clear();
            }
            // Deleted since it was listed: the snapshot holds the record, and no comments.
            Err(AirtableError::NotFound { .. }) => {}
            Err(e) => self.problems.push(format!(
                "comments of record {record} in table {table}: {}",
                super::without_urls(&e.to_string())
            )),
        }
    }

    /// Stores a comments file for each of `tables` (ids, in schema order) with comments: the
    /// nodes of the `comments/` folder and its meta, or `None` when comments are skipped.
    pub(super) async fn save(
        &self,
        writer: &BlobWriter,
        tables: &[String],
    ) -> Result<Option<(Vec<Node>, CommentsDirMeta)>, RepoError> {
        if !self.wanted() {
            return Ok(None);
        }
        let mut nodes = Vec::new();
        let mut total = 0u64;
        for table in tables {
            let Some(records) = self.by_table.get(table) else {
                continue;
            };
            let mut bytes = Vec::new();
            let mut comments = 0u64;
            for (record, list) in records {
                bytes.extend_from_slice(&line(record, list));
                comments += list.len() as u64;
            }
            let size = bytes.len() as u64;
            let mut saver = writer.file(BlobKind::Meta);
            saver.push(&bytes).await?;
            let (content, _) = saver.finish().await?;
            let meta = CommentsMeta {
                id: table.clone(),
                records: records.len() as u64,
                comments,
            };
            nodes.push(layout::comments_node(&meta, size, content));
            total += comments;
        }
        Ok(Some((nodes, CommentsDirMeta { comments: total })))
    }
}

/// One record's line: `{"comments":[…],"record":"rec…"}` and `\n`, keys sorted at every level
/// (serde_json's map is ordered by key here; see `records::canonical_line`).
pub(crate) fn line(record: &str, comments: &[Value]) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({"comments": comments, "record": record}))
        .expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::airtable::ApiError;

    #[test]
    fn lines_sort_keys_and_keep_the_order_of_comments() {
        let comments = vec![
            json!({"text": "b", "id": "com2", "author": {"name": "N", "id": "usr1"}}),
            json!({"id": "com1", "text": "a"}),
        ];
        assert_eq!(
            String::from_utf8(line("rec1", &comments)).unwrap(),
            "{\"comments\":[{\"author\":{\"id\":\"usr1\",\"name\":\"N\"},\"id\":\"com2\",\
             \"text\":\"b\"},{\"id\":\"com1\",\"text\":\"a\"}],\"record\":\"rec1\"}\n"
        );
    }

    #[test]
    fn a_refusal_skips_every_comment_and_a_missing_record_is_no_problem() {
        let mut comments = Comments::new(true);
        comments.read("tblA", "rec1", Ok(vec![json!({"id": "com1"})]));
        comments.read(
            "tblA",
            "rec2",
            Err(AirtableError::NotFound {
                what: "record".into(),
                api: ApiError::default(),
            }),
        );
        assert!(comments.problems.is_empty());
        assert_eq!(comments.by_table["tblA"].len(), 1);
        comments.read(
            "tblA",
            "rec3",
            Err(AirtableError::Forbidden {
                operation: "list comments",
                base: None,
                scope: "data.recordComments:read",
                api: ApiError::default(),
            }),
        );
        assert_eq!(comments.skipped, Some(CommentsSkipped::NoScope));
        assert!(!comments.wanted());
        assert!(comments.by_table.is_empty());
        assert_eq!(
            Comments::new(false).skipped,
            Some(CommentsSkipped::TurnedOff)
        );
    }
}
