//! The `airback` binary: everything happens in [`airback::cli`].

fn main() -> std::process::ExitCode {
    release_freed_buffers();
    airback::cli::main()
}

/// Makes glibc serve allocations of 1 MiB and more with their own mappings, returned to the OS
/// when freed. By default glibc raises that threshold after the first large free, and from then
/// on keeps freed multi-MiB buffers (packs, attachment chunks) in its heap: a snapshot's peak
/// memory doubled (147 MiB against 69 MiB for a 10,000-record base with 200 MB of attachments;
/// docs/BENCHMARKS.md, "Snapshot of a large base").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_freed_buffers() {
    // SAFETY: mallopt only sets an allocator parameter; it is called once, before any other
    // thread exists, and its result (0 on failure) leaves the default behaviour in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_buffers() {}
