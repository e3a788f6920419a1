//! Storage faults injected from a seeded plan, for tests only: an opendal layer that sits right
//! above the storage service, below the timeout and retry layers (so that they see the faults
//! as they would see a real service's), and makes some requests
//!
//! - hang longer than the timeout (the timeout layer cuts them, as a temporary error),
//! - fail with a 500 or a 503 answer (errors marked temporary, as opendal marks a real
//!   service's 5xx answers, so the retry layer retries them),
//! - lose their connection: before the request, or in the middle of a read's body,
//! - read slowly (a pause before each piece, shorter than the timeout),
//! - fail after the bytes of a write reached the service (the object is stored; the answer is
//!   lost), after which the retried write sends the whole object again.
//!
//! Which request meets which fault depends on the plan's seed, the operation, the top folder
//! of the path (`data`, `index`, `keys`, ...) and how many requests of that operation went to
//! that folder before: the same plan gives the same sequence of faults to each kind of request
//! run after run, whatever the random names of keys and encrypted packs (only which of
//! several concurrent requests gets a fault may vary).
//!
//! Only [`super::BackendOptions::faults`] turns it on; it is `None` unless a test sets it.
//! Writes to local folders bypass opendal (see `write_local`), and so these faults.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::raw::*;
use opendal::*;

/// A seeded plan of faults (see the module docs).
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Chooses which requests meet a fault.
    pub seed: u64,
    /// The share of requests that meet one, from 0.0 to 1.0.
    pub rate: f64,
    /// How long a hung request waits before it goes on: make it longer than
    /// [`super::BackendOptions::timeout`].
    pub hang: Duration,
    /// The pause before each piece of a slow read: shorter than the timeout.
    pub slow: Duration,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Attempts so far, by operation and top folder.
    attempts: Mutex<HashMap<(&'static str, String), u64>>,
    /// Faults injected so far, by kind.
    injected: Mutex<BTreeMap<&'static str, u64>>,
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Hang,
    Status500,
    Status503,
    Reset,
    SlowRead,
    FailAfterWrite,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Hang => "hang",
            Fault::Status500 => "500",
            Fault::Status503 => "503",
            Fault::Reset => "connection reset",
            Fault::SlowRead => "slow read",
            Fault::FailAfterWrite => "write failed after its bytes arrived",
        }
    }
}

impl FaultPlan {
    /// A plan with `seed` in which `rate` of the requests meet a fault, hung requests wait
    /// `hang` and slow reads pause 20 ms before each piece.
    pub fn new(seed: u64, rate: f64, hang: Duration) -> FaultPlan {
        FaultPlan {
            seed,
            rate,
            hang,
            slow: Duration::from_millis(20),
            state: Arc::default(),
        }
    }

    /// The faults injected so far (by this plan and its clones), by kind.
    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.state
            .injected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The fault the next attempt of `op` on `path` meets, if any, counted as injected.
    fn next(&self, op: &'static str, path: &str) -> Option<Fault> {
        let folder = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let attempt = {
            let mut attempts = self
                .state
                .attempts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let n = attempts.entry((op, folder.to_string())).or_default();
            *n += 1;
            *n
        };
        let mut h = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        for byte in op.bytes().chain([0]).chain(folder.bytes()) {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let roll = splitmix(h ^ attempt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        let chance = (roll >> 11) as f64 / (1u64 << 53) as f64;
        if chance >= self.rate {
            return None;
        }
        // Where in [0, rate) it fell picks the kind.
        let share = chance / self.rate;
        let fault = match op {
            "read" => match share {
                s if s < 0.05 => Fault::Hang,
                s if s < 0.30 => Fault::Status500,
                s if s < 0.55 => Fault::Status503,
                s if s < 0.80 => Fault::Reset,
                _ => Fault::SlowRead,
            },
            "write" => match share {
                s if s < 0.05 => Fault::Hang,
                s if s < 0.35 => Fault::Status500,
                s if s < 0.60 => Fault::Status503,
                s if s < 0.75 => Fault::Reset,
                _ => Fault::FailAfterWrite,
            },
            _ => match share {
                s if s < 0.05 => Fault::Hang,
                s if s < 0.40 => Fault::Status500,
                s if s < 0.75 => Fault::Status503,
                _ => Fault::Reset,
            },
        };
        *self
            .state
            .injected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(fault.name())
            .or_default() += 1;
        Some(fault)
    }

    /// Applies a fault that happens before the request reaches the service: a hang, or an
    /// error. Others are left to the caller.
    async fn before(&self, op: &'static str, path: &str) -> Result<Option<Fault>> {
        match self.next(op, path) {
            Some(Fault::Hang) => {
                tokio::time::sleep(self.hang).await;
                Ok(None)
            }
            Some(fault @ (Fault::Status500 | Fault::Status503 | Fault::Reset)) => {
                Err(injected_error(fault, op, path))
            }
            other => Ok(other),
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The error a real service's failure gives: temporary, so that the retry layer retries it.
fn injected_error(fault: Fault, op: &'static str, path: &str) -> Error {
    let message = match fault {
        Fault::Status500 => "injected fault: 500 Internal Server Error",
        Fault::Status503 => "injected fault: 503 Service Unavailable",
        Fault::Reset => "injected fault: connection reset by peer",
        Fault::FailAfterWrite => "injected fault: connection reset after the object was uploaded",
        Fault::Hang | Fault::SlowRead => "injected fault",
    };
    Error::new(ErrorKind::Unexpected, message)
        .with_operation(op)
        .with_context("path", path)
        .set_temporary()
}

/// The layer of a [`FaultPlan`].
#[derive(Debug, Clone)]
pub(crate) struct FaultLayer(pub(crate) FaultPlan);

impl Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FaultService {
            inner,
            plan: self.0.clone(),
        })
    }
}

#[derive(Debug)]
pub(crate) struct FaultService {
    inner: Servicer,
    plan: FaultPlan,
}

impl Service for FaultService {
    type Reader = FaultReader;
    type Writer = FaultWriter;
    type Lister = FaultLister;
    type Deleter = FaultDeleter;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.plan.before("create_dir", path).await?;
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.plan.before("stat", path).await?;
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let inner = self.inner.read(ctx, path, args)?;
        Ok(FaultReader {
            inner,
            plan: self.plan.clone(),
            path: path.to_string(),
        })
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        let inner = self.inner.write(ctx, path, args.clone())?;
        Ok(FaultWriter {
            inner,
            service: self.inner.clone(),
            ctx: ctx.clone(),
            args,
            plan: self.plan.clone(),
            path: path.to_string(),
            written: Vec::new(),
            landed: false,
        })
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        Ok(FaultDeleter {
            inner: self.inner.delete(ctx)?,
            plan: self.plan.clone(),
        })
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        Ok(FaultLister {
            inner: self.inner.list(ctx, path, args)?,
            plan: self.plan.clone(),
            path: path.to_string(),
            started: false,
        })
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(&self, ctx: &OperationContext, to: &str, args: OpCompose) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        self.inner.rename(ctx, from, to, args).await
    }

    async fn restore(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpRestore,
    ) -> Result<RpRestore> {
        self.inner.restore(ctx, path, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

/// Reads that hang, fail, lose their connection after the first piece, or go slowly.
pub(crate) struct FaultReader {
    inner: oio::Reader,
    plan: FaultPlan,
    path: String,
}

impl oio::Read for FaultReader {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        let fault = self.plan.before("read", &self.path).await?;
        let (rp, stream) = self.inner.open(range).await?;
        Ok((
            rp,
            Box::new(FaultStream {
                inner: stream,
                fault,
                pieces: 0,
                plan: self.plan.clone(),
                path: self.path.clone(),
            }),
        ))
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        if let Some(Fault::SlowRead) = self.plan.before("read", &self.path).await? {
            tokio::time::sleep(self.plan.slow).await;
        }
        self.inner.read(range).await
    }
}

struct FaultStream {
    inner: Box<dyn oio::ReadStreamDyn>,
    fault: Option<Fault>,
    pieces: u64,
    plan: FaultPlan,
    path: String,
}

impl oio::ReadStream for FaultStream {
    async fn read(&mut self) -> Result<Buffer> {
        self.pieces += 1;
        match self.fault {
            Some(Fault::SlowRead) => tokio::time::sleep(self.plan.slow).await,
            // The connection breaks after the first piece: the retry layer reads the rest
            // from where it stopped.
            Some(Fault::Reset) if self.pieces == 2 => {
                self.fault = None;
                return Err(injected_error(Fault::Reset, "read", &self.path));
            }
            _ => {}
        }
        self.inner.read_dyn().await
    }
}

/// Writes that hang, fail, or fail after their bytes were stored; the retried close of the
/// last sends the whole object again, as a retried request does.
pub(crate) struct FaultWriter {
    inner: oio::Writer,
    service: Servicer,
    ctx: OperationContext,
    args: OpWrite,
    plan: FaultPlan,
    path: String,
    /// What was written, to send again after a [`Fault::FailAfterWrite`].
    written: Vec<Buffer>,
    /// The object was stored, but its write reported a failure.
    landed: bool,
}

impl oio::Write for FaultWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.written.push(bs.clone());
        self.inner.write(bs).await
    }

    async fn copy_from(&mut self, path: &str, args: OpRead, range: BytesRange) -> Result<()> {
        self.inner.copy_from(path, args, range).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        if self.landed {
            // The retry: the whole request again.
            self.landed = false;
            let mut again = self
                .service
                .write(&self.ctx, &self.path, self.args.clone())?;
            for piece in &self.written {
                again.write_dyn(piece.clone()).await?;
            }
            return again.close_dyn().await;
        }
        match self.plan.before("write", &self.path).await? {
            Some(Fault::FailAfterWrite) => {
                self.inner.close().await?;
                self.landed = true;
                Err(injected_error(Fault::FailAfterWrite, "write", &self.path))
            }
            _ => self.inner.close().await,
        }
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

/// Listings that hang or fail before their first page.
pub(crate) struct FaultLister {
    inner: oio::Lister,
    plan: FaultPlan,
    path: String,
    started: bool,
}

impl oio::List for FaultLister {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        if !self.started {
            self.plan.before("list", &self.path).await?;
        }
        let entry = self.inner.next_dyn().await?;
        self.started = true;
        Ok(entry)
    }
}

/// Deletions that hang or fail before they are sent.
pub(crate) struct FaultDeleter {
    inner: oio::Deleter,
    plan: FaultPlan,
}

impl oio::Delete for FaultDeleter {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        self.plan.before("delete", path).await?;
        self.inner.delete_dyn(path, args).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close_dyn().await
    }
}
