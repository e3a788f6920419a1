//! Record comments of an in-place restore, after the records are written: the comments the
//! snapshot holds that the live records lack are created again, as the token's user, each
//! starting with its original author and time (`restore::comments`).
//!
//! A record created again gets all its comments. A record that survived gets those it lost
//! since: what it holds is read from the safety snapshot (taken before writing) when that
//! snapshot holds comments, else listed through the API. A live comment with the same id, or
//! whose text is the comment's (restored or original), counts as present, so running the same
//! restore again creates nothing twice. With `--field` (cells only) nothing is done.

use std::collections::HashMap;

use futures::TryStreamExt;
use serde_json::Value;

use super::super::comments::{self, is_copy};
use super::{InPlaceOptions, InPlaceReport, TableWork};
use crate::airtable::{AirtableError, Client};
use crate::restore::RestoreError;
use crate::stored::StoredBase;

/// Creates the comments the live records lack (module docs).
pub(super) async fn restore_comments(
    stored: &StoredBase,
    client: &Client,
    base: &str,
    safety: Option<&StoredBase>,
    work: &[TableWork],
    options: &InPlaceOptions,
    report: &mut InPlaceReport,
) -> Result<(), RestoreError> {
    if !stored.has_comments() || !options.fields.is_empty() {
        return Ok(());
    }
    let safety = safety.filter(|s| s.has_comments());
    for tw in work {
        if tw.id.is_empty() || stored.comment_count(&tw.source) == 0 {
            continue;
        }
        let records: Vec<_> = stored.comments(&tw.source).try_collect().await?;
        let before: Option<HashMap<String, Vec<Value>>> = match safety {
            Some(s) => Some(s.comments_by_record(&tw.id).await?),
            None => None,
        };
        for record in records {
            if (!options.records.is_empty() && !options.records.contains(&record.record))
                || tw.gone.contains(&record.record)
            {
                continue;
            }
            let (live_id, recreated) = match report.recreated.get(&record.record) {
                Some(new) => (new.clone(), true),
                None => (record.record.clone(), false),
            };
            let live = match (&before, recreated) {
                (Some(before), false) => before.get(&live_id).cloned().unwrap_or_default(),
                _ => match client.list_comments(base, &tw.id, &live_id).await {
                    Ok(live) => live,
                    Err(AirtableError::NotFound { .. }) => continue,
                    Err(AirtableError::Forbidden { .. }) => {
                        report.problems.push(
                            "comments are not restored: the token lacks the \
                             data.recordComments:read scope"
                                .to_owned(),
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            // Original comment id → its live counterpart, for replies.
            let mut ids: HashMap<String, String> = HashMap::new();
            for comment in &record.comments {
                let id = comment["id"].as_str().unwrap_or_default().to_owned();
                if let Some(found) = live.iter().find(|l| is_copy(l, comment)) {
                    ids.insert(id, found["id"].as_str().unwrap_or_default().to_owned());
                    continue;
                }
                let parent = comment["parentCommentId"]
                    .as_str()
                    .and_then(|p| ids.get(p))
                    .cloned();
                let target = (base, tw.id.as_str(), live_id.as_str());
                match comments::create(client, target, comment, parent.as_deref()).await {
                    Ok((new, author)) => {
                        ids.insert(id, new);
                        report.comments_created += 1;
                        if report.comments_author.is_none() {
                            report.comments_author = author;
                        }
                    }
                    Err(AirtableError::Forbidden { .. }) => {
                        report
                            .problems
                            .push(comments::no_scope_problem(stored.comment_count(&tw.source)));
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}
