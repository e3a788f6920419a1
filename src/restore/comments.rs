//! Record comments, after the records: each comment the snapshot holds is created again on
//! its record's new id, oldest first, one request each (the API creates one comment per
//! request). The API sets the author (the token's user) and the time (now), so each comment's
//! text starts with its original author and time ([`restored_text`]). A reply is created as a
//! reply when its parent was created by this restore. Mentions (`@[usr…]`) stay as they are.
//!
//! Resuming: the journal notes each comment as pending before its request and its new id
//! after. A record with a pending comment (a crash, or an unknown outcome, between the two)
//! has its target comments listed first, and a comment whose text is already there is not
//! created again. A token without the `data.recordComments:write` scope is a problem of the
//! report, not a failure: the records are restored, their comments are not.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{Journal, RestoreError, Run, WRITE_CONCURRENCY};
use crate::airtable::{AirtableError, Client};

/// The text of a restored comment: `Ada Lovelace (ada@example.com), 2024-03-04T10:00:00.000Z:
/// original text` (`, edited …` after the time when it was edited).
pub(crate) fn restored_text(comment: &Value) -> String {
    let author = &comment["author"];
    let name = author["name"]
        .as_str()
        .or_else(|| author["id"].as_str())
        .unwrap_or("unknown author");
    let who = match author["email"].as_str() {
        Some(email) if !email.is_empty() => format!("{name} ({email})"),
        _ => name.to_owned(),
    };
    let when = comment["createdTime"].as_str().unwrap_or("unknown time");
    let edited = comment["lastUpdatedTime"]
        .as_str()
        .map(|t| format!(", edited {t}"))
        .unwrap_or_default();
    let text = comment["text"].as_str().unwrap_or_default();
    format!("{who}, {when}{edited}: {text}")
}

/// Whether `live` is `comment` itself (the same id) or a copy of it that a restore created
/// (its restored text, or its very text).
pub(crate) fn is_copy(live: &Value, comment: &Value) -> bool {
    (live["id"].is_string() && live["id"] == comment["id"])
        || live["text"].as_str() == Some(&restored_text(comment))
        || (live["text"].is_string() && live["text"] == comment["text"])
}

/// What creating the comments of one record did.
pub(crate) enum Outcome {
    /// Comments created, and who the API says wrote them (the token's user).
    Created(u64, Option<String>),
    /// The token may not write comments.
    NoScope,
}

/// The message of a restore whose token may not write comments.
pub(crate) fn no_scope_problem(comments: u64) -> String {
    format!(
        "{comments} comments are not restored: the token lacks the data.recordComments:write \
         scope (add it and run the same command again)"
    )
}

/// Creates `comment` on a record with `text`, as a reply to `parent`; after an unknown
/// outcome, reads the record's comments and takes the copy found there instead of sending
/// it again (at most once more). The new comment's id and author (the token's user).
pub(crate) async fn create(
    client: &Client,
    (base, table, record): (&str, &str, &str),
    comment: &Value,
    parent: Option<&str>,
) -> Result<(String, Option<String>), AirtableError> {
    let text = restored_text(comment);
    let created = match client
        .create_comment(base, table, record, &text, parent)
        .await
    {
        Err(AirtableError::WriteOutcomeUnknown { .. }) => {
            let live = client.list_comments(base, table, record).await?;
            match live.into_iter().find(|l| l["text"].as_str() == Some(&text)) {
                Some(found) => found,
                None => {
                    client
                        .create_comment(base, table, record, &text, parent)
                        .await?
                }
            }
        }
        other => other?,
    };
    Ok((
        created["id"].as_str().unwrap_or_default().to_owned(),
        author_of(&created),
    ))
}

/// Creates the comments of one record (original `source`, new `target`) that the journal does
/// not hold as created, oldest first.
async fn restore_record(
    client: &Client,
    journal: &Journal,
    (base, table): (&str, &str),
    source: &str,
    target: &str,
    comments: &[Value],
) -> Result<Outcome, RestoreError> {
    let known = journal.comments_of(source)?;
    let mut done: HashMap<String, String> = known
        .iter()
        .filter_map(|(source, target)| Some((source.clone(), target.clone()?)))
        .collect();
    // A pending create may have happened: what the record holds decides.
    let live = if known.values().any(Option::is_none) {
        match client.list_comments(base, table, target).await {
            Err(AirtableError::Forbidden { .. }) => return Ok(Outcome::NoScope),
            other => other?,
        }
    } else {
        Vec::new()
    };
    let mut created = 0u64;
    let mut author = None;
    for comment in comments {
        let Some(id) = comment["id"].as_str() else {
            continue;
        };
        if done.contains_key(id) {
            continue;
        }
        if known.contains_key(id) {
            let text = restored_text(comment);
            if let Some(found) = live.iter().find(|l| l["text"].as_str() == Some(&text)) {
                let found = found["id"].as_str().unwrap_or_default().to_owned();
                journal.set_comment_target(id, &found)?;
                done.insert(id.to_owned(), found);
                continue;
            }
        }
        let parent = comment["parentCommentId"]
            .as_str()
            .and_then(|p| done.get(p))
            .cloned();
        journal.set_comment_pending(id, source)?;
        let (new, by) =
            match create(client, (base, table, target), comment, parent.as_deref()).await {
                Err(AirtableError::Forbidden { .. }) => return Ok(Outcome::NoScope),
                other => other?,
            };
        author = author.or(by);
        journal.set_comment_target(id, &new)?;
        done.insert(id.to_owned(), new);
        created += 1;
    }
    Ok(Outcome::Created(created, author))
}

/// Who the restored comments are written as: the token's user, by email when Airtable says
/// it, else by id. Read from a created comment's author, so it costs no request.
pub(crate) fn author_of(created: &Value) -> Option<String> {
    let author = created.get("author")?;
    author
        .get("email")
        .or_else(|| author.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

impl Run<'_> {
    /// Creates the snapshot's comments again on the restored records (module docs).
    pub(super) async fn comments(&mut self) -> Result<(), RestoreError> {
        let total = self.report.workload.comments;
        if total == 0 {
            return Ok(());
        }
        self.progress.phase("comments", Some(total));
        let plan = self.plan.clone();
        let mut no_record = 0u64;
        for table in &plan.tables {
            if self.stored.comment_count(&table.source_id) == 0 {
                continue;
            }
            let Some(target_table) = self.targets.get(&table.source_id).map(|t| t.table.clone())
            else {
                continue;
            };
            let records: Vec<_> = self.stored.comments(&table.source_id).try_collect().await?;
            let mut work = Vec::new();
            for record in records {
                match self.journal.target_of(&record.record)? {
                    Some(target) => work.push((record, target)),
                    None => no_record += record.comments.len() as u64,
                }
            }
            let (client, journal, base) = (self.client, &*self.journal, self.base_id.as_str());
            let progress = self.progress.clone();
            let outcomes: Vec<Result<Outcome, RestoreError>> = futures::stream::iter(work)
                .map(|(record, target)| {
                    let (table, progress) = (target_table.as_str(), progress.clone());
                    async move {
                        let outcome = restore_record(
                            client,
                            journal,
                            (base, table),
                            &record.record,
                            &target,
                            &record.comments,
                        )
                        .await;
                        progress.items(record.comments.len() as u64);
                        outcome
                    }
                })
                .buffer_unordered(WRITE_CONCURRENCY)
                .collect()
                .await;
            for outcome in outcomes {
                match outcome? {
                    Outcome::Created(n, author) => {
                        self.report.comments_written += n;
                        if self.report.comments_author.is_none() {
                            self.report.comments_author = author;
                        }
                    }
                    Outcome::NoScope => {
                        self.report.problems.push(no_scope_problem(total));
                        return Ok(());
                    }
                }
            }
        }
        if no_record > 0 {
            self.report.problems.push(format!(
                "{no_record} comments are not restored: their records were not restored (see \
                 above)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn restored_text_starts_with_the_original_author_and_time() {
        let comment = json!({
            "id": "com1", "text": "hi @[usrAAAAAAAAAAAAAA]", "createdTime": "2024-03-04T10:00:00.000Z",
            "lastUpdatedTime": null,
            "author": {"id": "usr1", "email": "ada@example.com", "name": "Ada Lovelace"},
        });
        assert_eq!(
            restored_text(&comment),
            "Ada Lovelace (ada@example.com), 2024-03-04T10:00:00.000Z: hi @[usrAAAAAAAAAAAAAA]"
        );
        let mut edited = comment.clone();
        edited["lastUpdatedTime"] = json!("2024-03-05T00:00:00.000Z");
        edited["author"] = json!({"id": "usr1"});
        assert_eq!(
            restored_text(&edited),
            "usr1, 2024-03-04T10:00:00.000Z, edited 2024-03-05T00:00:00.000Z: hi @[usrAAAAAAAAAAAAAA]"
        );
        assert!(is_copy(
            &json!({"id": "com9", "text": restored_text(&comment)}),
            &comment
        ));
        assert!(is_copy(&json!({"id": "com1", "text": "changed"}), &comment));
        assert!(!is_copy(&json!({"id": "com9", "text": "other"}), &comment));
    }
}
