//! Record comments: the list route (newest first, pages of at most 100 with an `offset`), the
//! create route (the token's user is the author, the time is now), and the JSON of a comment
//! as Airtable shows it: `id`, `text`, `createdTime`, `lastUpdatedTime` (null until edited),
//! `author {id, email, name}`, `mentioned` (only when the text mentions someone, as
//! `@[usrXXXXXXXXXXXXXX]`) and `parentCommentId` (only for a reply).

use serde_json::{Map, Value, json};

use super::api_error::ApiError;
use super::ids::{IdKind, is_airtable_id};
use super::state::{Comment, World};
use super::time::format_iso_ms;

/// The largest (and default) page of comments.
pub(crate) const MAX_PAGE_SIZE: usize = 100;

/// The longest comment text accepted (Airtable's limit is unpublished; this is generous).
const MAX_TEXT_CHARS: usize = 100_000;

/// The ids mentioned in `text` (`@[usr…]`), in order, each once.
pub(crate) fn mentions(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("@[") {
        let after = &rest[start + 2..];
        match after.find(']') {
            Some(end) => {
                let id = &after[..end];
                if is_airtable_id(id, "usr") && !out.contains(&id) {
                    out.push(id);
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// A comment as the API returns it.
pub(crate) fn comment_json(world: &World, comment: &Comment) -> Value {
    let author = &world.users[comment.author as usize];
    let mut object = json!({
        "id": comment.id,
        "text": comment.text,
        "createdTime": format_iso_ms(comment.created_ms),
        "lastUpdatedTime": comment.updated_ms.map(format_iso_ms),
        "author": author.to_json(),
    });
    let mut mentioned = Map::new();
    for id in mentions(&comment.text) {
        if let Some(index) = world.user_index(id) {
            let user = &world.users[index as usize];
            mentioned.insert(
                user.id.clone(),
                json!({"id": user.id, "type": "user", "displayName": user.name, "email": user.email}),
            );
        }
    }
    if !mentioned.is_empty() {
        object["mentioned"] = Value::Object(mentioned);
    }
    if let Some(parent) = &comment.parent {
        object["parentCommentId"] = json!(parent);
    }
    object
}

/// One page of a record's comments, newest first: `{"comments": […], "offset"?}`. The offset
/// is the id of the next comment to return.
pub(crate) fn list_page(
    world: &World,
    comments: &[Comment],
    query: &[(String, String)],
) -> Result<Value, ApiError> {
    let mut page_size = MAX_PAGE_SIZE;
    let mut offset: Option<&str> = None;
    for (key, value) in query {
        match key.as_str() {
            "pageSize" => {
                page_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        ApiError::invalid_request(format!(
                            "pageSize must be a positive integer, got {value}"
                        ))
                    })?;
                if page_size > MAX_PAGE_SIZE {
                    return Err(ApiError::invalid_request(format!(
                        "pageSize must be at most {MAX_PAGE_SIZE}, got {page_size}"
                    )));
                }
            }
            "offset" => offset = Some(value),
            _ => {
                return Err(ApiError::invalid_request(format!(
                    "unknown parameter {key}"
                )));
            }
        }
    }
    let newest_first: Vec<&Comment> = comments.iter().rev().collect();
    let start = match offset {
        None => 0,
        Some(offset) => newest_first
            .iter()
            .position(|c| c.id == offset)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "INVALID_OFFSET_VALUE",
                    format!("The offset {offset} is not a valid offset"),
                )
            })?,
    };
    let end = (start + page_size).min(newest_first.len());
    let items: Vec<Value> = newest_first[start..end]
        .iter()
        .map(|c| comment_json(world, c))
        .collect();
    let mut page = json!({ "comments": items });
    if let Some(next) = newest_first.get(end) {
        page["offset"] = json!(next.id);
    }
    Ok(page)
}

/// Checks a create body (`{text, parentCommentId?}`) against the record's comments: the text
/// and the parent id.
pub(crate) fn parse_create(body: &Value, comments: &[Comment]) -> Result<NewComment, ApiError> {
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "text" && *k != "parentCommentId"))
    {
        return Err(ApiError::invalid_request(format!(
            "unknown property \"{unknown}\""
        )));
    }
    let text = body["text"]
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_request("text must be a non-empty string"))?;
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::invalid_request("text is too long"));
    }
    let parent = match body.get("parentCommentId") {
        None | Some(Value::Null) => None,
        Some(Value::String(parent)) => {
            if !comments.iter().any(|c| c.id == *parent) {
                return Err(ApiError::invalid_request(format!(
                    "parentCommentId {parent} is not a comment of this record"
                )));
            }
            Some(parent.clone())
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "parentCommentId must be a string",
            ));
        }
    };
    Ok(NewComment {
        text: text.to_owned(),
        parent,
    })
}

/// A comment to add, checked.
pub(crate) struct NewComment {
    pub(crate) text: String,
    pub(crate) parent: Option<String>,
}

/// Adds a comment to a record of a table (which must exist): the new comment.
pub(crate) fn add(
    world: &mut World,
    base_index: usize,
    table_index: usize,
    record_id: &str,
    author: u16,
    new: NewComment,
    now_ms: i64,
) -> Comment {
    let comment = Comment {
        id: world.ids.next(IdKind::Comment),
        author,
        text: new.text,
        created_ms: now_ms,
        updated_ms: None,
        parent: new.parent,
    };
    world.bases[base_index].tables[table_index]
        .comments
        .entry(record_id.to_owned())
        .or_default()
        .push(comment.clone());
    comment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_user_ids_in_brackets() {
        assert_eq!(
            mentions(
                "hi @[usrAAAAAAAAAAAAAA] and @[usrAAAAAAAAAAAAAA], @[nope] @[usrBBBBBBBBBBBBBB]"
            ),
            vec!["usrAAAAAAAAAAAAAA", "usrBBBBBBBBBBBBBB"]
        );
        assert!(mentions("no @[ end").is_empty());
    }
}
