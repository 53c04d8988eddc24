//! Threads that work for the kernel in the background, not for a caller waiting on them.

/// Makes the calling thread yield to every other thread of the machine (Linux: nice 19
/// for this thread only; elsewhere nothing). Its work then takes idle CPU, and a request
/// handler woken on the same core preempts it: on a core shared with request handling,
/// a background `fdatasync` no longer delays the answer that arrives during it. Such a
/// thread still gets about 1.5% of a saturated core (the scheduler's weight of nice 19),
/// so it is slowed, not starved, under full load. A process cannot undo this without
/// privileges, so it is only ever done on threads that keep it for life.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let _ = rustix::process::setpriority_process(Some(tid), 19);
    }
}
