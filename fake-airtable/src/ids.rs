//! Airtable-shaped identifiers: a three-letter prefix plus 14 base-62 characters, 17 in all.
//!
//! Every id the fake hands out comes from one seeded [`IdGen`], so a base generated twice from
//! the same seed gets the same ids, and ids created later through the API follow the same
//! deterministic sequence for a given order of requests.

/// The kinds of object that carry an id, with the prefix the real service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdKind {
    Base,
    Table,
    Field,
    View,
    Record,
    Attachment,
    Choice,
    User,
    Workspace,
    Iterator,
    Comment,
}

impl IdKind {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            IdKind::Base => "app",
            IdKind::Table => "tbl",
            IdKind::Field => "fld",
            IdKind::View => "viw",
            IdKind::Record => "rec",
            IdKind::Attachment => "att",
            IdKind::Choice => "sel",
            IdKind::User => "usr",
            IdKind::Workspace => "wsp",
            IdKind::Iterator => "itr",
            IdKind::Comment => "com",
        }
    }
}

/// Length of every Airtable object id.
pub const ID_LEN: usize = 17;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A deterministic id source.
#[derive(Debug, Clone)]
pub(crate) struct IdGen {
    rng: fastrand::Rng,
}

impl IdGen {
    pub(crate) fn new(seed: u64) -> IdGen {
        IdGen {
            rng: fastrand::Rng::with_seed(seed ^ 0x1d5e_ed00_a1b2_c3d4),
        }
    }

    /// The next id of `kind`.
    pub(crate) fn next(&mut self, kind: IdKind) -> String {
        let mut id = String::with_capacity(ID_LEN);
        id.push_str(kind.prefix());
        for _ in 0..ID_LEN - 3 {
            id.push(BASE62[self.rng.usize(..BASE62.len())] as char);
        }
        id
    }
}

/// Whether `candidate` looks like an Airtable id with `prefix` (`"rec"`, `"fld"`, ...).
pub fn is_airtable_id(candidate: &str, prefix: &str) -> bool {
    candidate.len() == ID_LEN
        && candidate.starts_with(prefix)
        && candidate[3..].bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_length_and_repeat_per_seed() {
        let mut first = IdGen::new(7);
        let mut second = IdGen::new(7);
        for kind in [
            IdKind::Base,
            IdKind::Table,
            IdKind::Record,
            IdKind::Attachment,
        ] {
            let id = first.next(kind);
            assert!(is_airtable_id(&id, kind.prefix()), "{id}");
            assert_eq!(id, second.next(kind));
        }
        assert_ne!(
            IdGen::new(8).next(IdKind::Record),
            IdGen::new(7).next(IdKind::Record)
        );
    }

    #[test]
    fn id_check_rejects_wrong_shapes() {
        assert!(!is_airtable_id("rec123", "rec"));
        assert!(!is_airtable_id("tblAAAAAAAAAAAAAA", "rec"));
        assert!(!is_airtable_id("recAAAAAAAAAAAA-A", "rec"));
    }
}
