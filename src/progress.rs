//! Progress of the long operations. A snapshot ([`crate::backup`]), a restore
//! ([`crate::restore()`]) and an export ([`crate::export()`]) report through one trait,
//! [`Progress`]: each goes through phases (a snapshot or an export a table at a time, a restore
//! a pass at a time), counts items (records, files) and, for attachments, bytes. The library only
//! reports; the CLI draws bars or writes lines with it, and [`NoProgress`] drops everything.

/// Receives the progress of a snapshot, a restore or an export. Every method has a no-op
/// default; calls may come from several threads at once.
pub trait Progress: Send + Sync {
    /// A phase starts: a table (`name` is the table's name; `total` is `None`), or a pass of a
    /// restore (`schema`, `records`, …) that will count `total` items.
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    /// `n` more items are done: records read (snapshot) or written (export), or units of a
    /// restore's pass.
    fn items(&self, _n: u64) {}
    /// `n` more bytes are on their way: attachments queued for download (snapshot) or to be
    /// written (export).
    fn bytes_expected(&self, _n: u64) {}
    /// `n` more of those bytes are done: stored (snapshot) or written (export).
    fn bytes(&self, _n: u64) {}
    /// The operation is over.
    fn finish(&self) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
