//! The deterministic, deny-by-default WASI preview1 subset (spec/sandbox.md §3).
//!
//! Everything the guest can observe comes from the request: arguments, environment,
//! stdin, the virtual files, the virtual time and the seed. Implemented functions are in
//! [`IMPLEMENTED`]; every other function of the `wasi_snapshot_preview1` module whose only
//! result is an `i32` errno is linked to a stub returning `ENOSYS`. Host functions never
//! trap the host: they return an errno, or end the run with a typed stop (`proc_exit`,
//! output limit, fuel).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmi::errors::MemoryError;
use wasmi::errors::TableError;
use wasmi::{Caller, Error, Linker, Memory, ResourceLimiter, ValType};
use wasmi_core::LimiterError;

use crate::drbg::Drbg;

/// The only import module the sandbox links.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Fuel charged by every host call (fuel model 1), before the bytes it moves.
pub const HOST_CALL_FUEL: u64 = 10;
/// Host calls also cost one fuel per this many bytes moved between host and guest
/// (rounded up).
pub const HOST_BYTES_PER_FUEL: u64 = 16;

/// Errno values (WASI preview1).
pub mod errno {
    /// No error.
    pub const SUCCESS: u16 = 0;
    /// Bad file descriptor.
    pub const BADF: u16 = 8;
    /// Bad address (a pointer outside linear memory).
    pub const FAULT: u16 = 21;
    /// Invalid argument.
    pub const INVAL: u16 = 28;
    /// Is a directory.
    pub const ISDIR: u16 = 31;
    /// Too many open files.
    pub const MFILE: u16 = 33;
    /// Filename too long.
    pub const NAMETOOLONG: u16 = 37;
    /// No such file or directory.
    pub const NOENT: u16 = 44;
    /// Function not implemented (everything outside the subset).
    pub const NOSYS: u16 = 52;
    /// Not a directory.
    pub const NOTDIR: u16 = 54;
    /// Not supported.
    pub const NOTSUP: u16 = 58;
    /// Value too large.
    pub const OVERFLOW: u16 = 61;
    /// Operation not permitted (a path outside the preopened directory).
    pub const PERM: u16 = 63;
    /// Read-only file system (any attempt to create, truncate or write a file).
    pub const ROFS: u16 = 69;
}

const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;

const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_SEEK: u64 = 1 << 2;
const RIGHT_FD_TELL: u64 = 1 << 5;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_PATH_OPEN: u64 = 1 << 13;
const RIGHT_FD_READDIR: u64 = 1 << 14;
const RIGHT_PATH_FILESTAT_GET: u64 = 1 << 18;
const RIGHT_FD_FILESTAT_GET: u64 = 1 << 21;
const RIGHT_POLL_FD_READWRITE: u64 = 1 << 27;
const RIGHTS_FILE: u64 =
    RIGHT_FD_READ | RIGHT_FD_SEEK | RIGHT_FD_TELL | RIGHT_FD_FILESTAT_GET | RIGHT_POLL_FD_READWRITE;
const RIGHTS_DIR: u64 = RIGHT_PATH_OPEN | RIGHT_FD_READDIR | RIGHT_PATH_FILESTAT_GET | RIGHT_FD_FILESTAT_GET;

const OFLAGS_CREAT: i32 = 1;
const OFLAGS_DIRECTORY: i32 = 2;
const OFLAGS_EXCL: i32 = 4;
const OFLAGS_TRUNC: i32 = 8;
const FDFLAGS_APPEND: i32 = 1;

/// The preopened directory's descriptor and name.
pub const PREOPEN_FD: u32 = 3;
/// Name of the preopened directory: the root, so that absolute and relative paths in the
/// guest's libc both resolve into it.
pub const PREOPEN_NAME: &str = "/";
/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;

/// A read-only file the guest may open under the preopened directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualFile {
    /// Relative path: `/`-separated components, none empty, `.` or `..`.
    pub path: String,
    /// Content, shared (a run does not copy it).
    pub data: Arc<[u8]>,
}

impl VirtualFile {
    /// A file at `path` holding `data`.
    pub fn new(path: impl Into<String>, data: impl Into<Arc<[u8]>>) -> VirtualFile {
        VirtualFile {
            path: path.into(),
            data: data.into(),
        }
    }
}

/// Why a host function ended the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostStop {
    /// The fuel limit was reached inside a host call.
    Gas,
    /// stdout + stderr reached the output cap.
    OutputLimit,
}

impl core::fmt::Display for HostStop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HostStop::Gas => f.write_str("fuel exhausted in a host call"),
            HostStop::OutputLimit => f.write_str("output limit reached"),
        }
    }
}

impl wasmi::errors::HostError for HostStop {}

/// Memory and table caps, enforced on every growth including the initial sizes.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) table_elements: usize,
    /// Set when a growth was refused for a cap or failed for lack of host memory: the
    /// run's stop is then `MEMORY_EXHAUSTED`.
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if maximum.is_some_and(|m| desired > m) {
            // The module's own maximum: an ordinary refused grow (-1), as the spec says.
            return Ok(false);
        }
        if desired > self.memory_bytes {
            self.exceeded = true;
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: &MemoryError) -> Result<(), LimiterError> {
        if matches!(error, MemoryError::OutOfSystemMemory) {
            self.exceeded = true;
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> Result<bool, LimiterError> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        if desired > self.table_elements {
            self.exceeded = true;
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: &TableError) -> Result<(), LimiterError> {
        if matches!(error, TableError::OutOfSystemMemory) {
            self.exceeded = true;
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(())
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        // wasmi's strict enforced limits cap tables per module at 100.
        100
    }

    fn memories(&self) -> usize {
        1
    }
}

#[derive(Clone, Debug)]
enum Fd {
    Stdin,
    Stdout,
    Stderr,
    Dir { path: String },
    File { data: Arc<[u8]>, pos: u64, ino: u64 },
}

/// Everything a run's guest can see, and what it wrote.
#[derive(Debug)]
pub(crate) struct Host {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    stdin: Vec<u8>,
    stdin_pos: usize,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    output_cap: u64,
    files: BTreeMap<String, (Arc<[u8]>, u64)>,
    fds: BTreeMap<u32, Fd>,
    max_open_files: usize,
    drbg: Drbg,
    time_ns: u64,
    pub(crate) memory: Option<Memory>,
    pub(crate) limiter: Limiter,
    /// Fuel of the call not yet handed to the store (see the engine's slicing).
    pub(crate) fuel_reserve: u64,
    /// The exit status given to `proc_exit`, if it was called.
    pub(crate) exit: Option<i32>,
}

/// What a run's host is built from.
pub(crate) struct HostInit<'a> {
    pub(crate) args: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) input: &'a [u8],
    pub(crate) files: &'a [VirtualFile],
    pub(crate) seed: [u8; 32],
    pub(crate) virtual_time_ms: u64,
    pub(crate) output_cap: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) table_elements: u64,
    pub(crate) max_files: usize,
    pub(crate) max_open_files: usize,
}

/// Checks a caller-supplied file path: the canonical relative form.
pub(crate) fn valid_file_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH
        && !path.contains('\0')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Host {
    pub(crate) fn new(init: &HostInit<'_>) -> Result<Host, String> {
        let mut args = Vec::with_capacity(init.args.len());
        for a in init.args {
            if a.contains('\0') {
                return Err(format!("argument {a:?} contains NUL"));
            }
            args.push(a.as_bytes().to_vec());
        }
        let mut env = Vec::with_capacity(init.env.len());
        for (k, v) in init.env {
            if k.is_empty() || k.contains('\0') || k.contains('=') || v.contains('\0') {
                return Err(format!("environment variable {k:?} is not NAME=VALUE without NUL"));
            }
            env.push(format!("{k}={v}").into_bytes());
        }
        if init.files.len() > init.max_files {
            return Err(format!(
                "{} files, at most {} allowed",
                init.files.len(),
                init.max_files
            ));
        }
        let mut files = BTreeMap::new();
        for (i, f) in init.files.iter().enumerate() {
            if !valid_file_path(&f.path) {
                return Err(format!(
                    "file path {:?} is not a relative path of non-empty components",
                    f.path
                ));
            }
            let ino = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
            if files.insert(f.path.clone(), (f.data.clone(), ino)).is_some() {
                return Err(format!("file path {:?} given twice", f.path));
            }
        }
        // A path cannot be both a file and a directory.
        for p in files.keys() {
            let prefix = format!("{p}/");
            if files
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&prefix))
            {
                return Err(format!("file path {p:?} is also a directory of other files"));
            }
        }
        let mut fds = BTreeMap::new();
        fds.insert(0, Fd::Stdin);
        fds.insert(1, Fd::Stdout);
        fds.insert(2, Fd::Stderr);
        fds.insert(PREOPEN_FD, Fd::Dir { path: String::new() });
        Ok(Host {
            args,
            env,
            stdin: init.input.to_vec(),
            stdin_pos: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            output_cap: init.output_cap,
            files,
            fds,
            max_open_files: init.max_open_files,
            drbg: Drbg::new(init.seed),
            time_ns: init.virtual_time_ms.saturating_mul(1_000_000),
            memory: None,
            limiter: Limiter {
                memory_bytes: usize::try_from(init.memory_bytes).unwrap_or(usize::MAX),
                table_elements: usize::try_from(init.table_elements).unwrap_or(usize::MAX),
                exceeded: false,
            },
            fuel_reserve: 0,
            exit: None,
        })
    }

    fn output_len(&self) -> u64 {
        (self.stdout.len() as u64).saturating_add(self.stderr.len() as u64)
    }

    fn alloc_fd(&mut self, fd: Fd) -> Result<u32, Fault> {
        let open = self.fds.len().saturating_sub(4);
        if open >= self.max_open_files {
            return Err(Fault::Errno(errno::MFILE));
        }
        // Lowest free descriptor above the preopen: deterministic.
        let mut n = PREOPEN_FD.saturating_add(1);
        while self.fds.contains_key(&n) {
            n = n.checked_add(1).ok_or(Fault::Errno(errno::MFILE))?;
        }
        self.fds.insert(n, fd);
        Ok(n)
    }

    /// Resolves `rel` against the directory `base` (both canonical, `""` is the root).
    fn resolve(&self, base: &str, rel: &[u8]) -> Result<String, Fault> {
        if rel.len() > MAX_PATH {
            return Err(Fault::Errno(errno::NAMETOOLONG));
        }
        let rel = core::str::from_utf8(rel).map_err(|_| Fault::Errno(errno::INVAL))?;
        if rel.contains('\0') {
            return Err(Fault::Errno(errno::INVAL));
        }
        if rel.starts_with('/') {
            // Absolute: outside the preopened directory (libc strips the preopen prefix).
            return Err(Fault::Errno(errno::PERM));
        }
        let mut out = String::from(base);
        for c in rel.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(Fault::Errno(errno::PERM)),
                c => {
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(c);
                }
            }
        }
        if out.len() > MAX_PATH {
            return Err(Fault::Errno(errno::NAMETOOLONG));
        }
        Ok(out)
    }

    fn is_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return true;
        }
        let prefix = format!("{path}/");
        self.files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

/// Outcome of a host function body: an errno for the guest, or an error that ends the run.
enum Fault {
    Errno(u16),
    Stop(Error),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Stop(e)
    }
}

fn finish(r: Result<(), Fault>) -> Result<i32, Error> {
    match r {
        Ok(()) => Ok(i32::from(errno::SUCCESS)),
        Err(Fault::Errno(e)) => Ok(i32::from(e)),
        Err(Fault::Stop(e)) => Err(e),
    }
}

/// Charges a host call: the base cost plus its bytes. Fuel beyond the store's current
/// slice comes from the reserve; when both are spent the run stops with `GAS_EXHAUSTED`
/// and all of the call's fuel counts as used.
fn charge(caller: &mut Caller<'_, Host>, bytes: u64) -> Result<(), Fault> {
    take_fuel(
        caller,
        HOST_CALL_FUEL.saturating_add(bytes.div_ceil(HOST_BYTES_PER_FUEL)),
    )
}

/// Charges only for bytes (for calls that learn how many bytes move after their checks;
/// they paid the base with `charge(caller, 0)` first).
fn charge_bytes(caller: &mut Caller<'_, Host>, bytes: u64) -> Result<(), Fault> {
    take_fuel(caller, bytes.div_ceil(HOST_BYTES_PER_FUEL))
}

fn take_fuel(caller: &mut Caller<'_, Host>, cost: u64) -> Result<(), Fault> {
    let have = caller.get_fuel()?;
    if let Some(left) = have.checked_sub(cost) {
        caller.set_fuel(left)?;
        return Ok(());
    }
    let need = cost.saturating_sub(have);
    let reserve = caller.data().fuel_reserve;
    caller.set_fuel(0)?;
    match reserve.checked_sub(need) {
        Some(left) => {
            caller.data_mut().fuel_reserve = left;
            Ok(())
        }
        None => {
            caller.data_mut().fuel_reserve = 0;
            Err(Fault::Stop(Error::host(HostStop::Gas)))
        }
    }
}

fn memory(caller: &Caller<'_, Host>) -> Result<Memory, Fault> {
    caller.data().memory.ok_or(Fault::Errno(errno::FAULT))
}

fn addr(v: i32) -> usize {
    // WASI pointers and lengths are u32 reinterpreted from the i32 ABI type.
    v as u32 as usize
}

fn span(mem: &[u8], ptr: usize, len: usize) -> Result<core::ops::Range<usize>, Fault> {
    let end = ptr.checked_add(len).ok_or(Fault::Errno(errno::FAULT))?;
    if end > mem.len() {
        return Err(Fault::Errno(errno::FAULT));
    }
    Ok(ptr..end)
}

fn get(mem: &[u8], ptr: usize, len: usize) -> Result<&[u8], Fault> {
    let r = span(mem, ptr, len)?;
    mem.get(r).ok_or(Fault::Errno(errno::FAULT))
}

fn get_mut(mem: &mut [u8], ptr: usize, len: usize) -> Result<&mut [u8], Fault> {
    let r = span(mem, ptr, len)?;
    mem.get_mut(r).ok_or(Fault::Errno(errno::FAULT))
}

fn put(mem: &mut [u8], ptr: usize, bytes: &[u8]) -> Result<(), Fault> {
    get_mut(mem, ptr, bytes.len())?.copy_from_slice(bytes);
    Ok(())
}

fn read_u32(mem: &[u8], ptr: usize) -> Result<u32, Fault> {
    let b = get(mem, ptr, 4)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    Ok(u32::from_le_bytes(a))
}

/// The (pointer, length) pairs of an iovec array, checked to lie in memory.
fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Result<Vec<(usize, usize)>, Fault> {
    let count = addr(count);
    let bytes = count.checked_mul(8).ok_or(Fault::Errno(errno::FAULT))?;
    let base = addr(iovs);
    get(mem, base, bytes)?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = base.saturating_add(i.saturating_mul(8));
        let p = read_u32(mem, at)? as usize;
        let l = read_u32(mem, at.saturating_add(4))? as usize;
        span(mem, p, l)?;
        out.push((p, l));
    }
    Ok(out)
}

fn total(iov: &[(usize, usize)]) -> u64 {
    iov.iter().fold(0u64, |t, (_, l)| t.saturating_add(*l as u64))
}

/// Functions of the subset with real implementations, and their signatures. A module
/// importing one of these names with another signature is refused (`IMPORT_DENIED`).
pub const IMPLEMENTED: &[(&str, &[ValType], &[ValType])] = {
    use ValType::{I32, I64};
    &[
        ("args_get", &[I32, I32], &[I32]),
        ("args_sizes_get", &[I32, I32], &[I32]),
        ("environ_get", &[I32, I32], &[I32]),
        ("environ_sizes_get", &[I32, I32], &[I32]),
        ("clock_res_get", &[I32, I32], &[I32]),
        ("clock_time_get", &[I32, I64, I32], &[I32]),
        ("fd_close", &[I32], &[I32]),
        ("fd_fdstat_get", &[I32, I32], &[I32]),
        ("fd_filestat_get", &[I32, I32], &[I32]),
        ("fd_prestat_get", &[I32, I32], &[I32]),
        ("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
        ("fd_read", &[I32, I32, I32, I32], &[I32]),
        ("fd_pread", &[I32, I32, I32, I64, I32], &[I32]),
        ("fd_seek", &[I32, I64, I32, I32], &[I32]),
        ("fd_tell", &[I32, I32], &[I32]),
        ("fd_write", &[I32, I32, I32, I32], &[I32]),
        ("path_open", &[I32, I32, I32, I32, I32, I64, I64, I32, I32], &[I32]),
        ("path_filestat_get", &[I32, I32, I32, I32, I32], &[I32]),
        ("proc_exit", &[I32], &[]),
        ("random_get", &[I32, I32], &[I32]),
        ("sched_yield", &[], &[I32]),
    ]
};

/// Writes a list of NUL-terminated strings and the pointers to them (args_get, environ_get).
fn string_list(caller: &mut Caller<'_, Host>, env: bool, ptrs: i32, buf: i32) -> Result<(), Fault> {
    let bytes = {
        let list = if env { &caller.data().env } else { &caller.data().args };
        list.iter()
            .fold(0u64, |t, s| t.saturating_add(s.len() as u64).saturating_add(5))
    };
    charge(caller, bytes)?;
    let m = memory(caller)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let list = if env { &host.env } else { &host.args };
    let mut p = addr(ptrs);
    let mut b = addr(buf);
    for s in list {
        let at = u32::try_from(b).map_err(|_| Fault::Errno(errno::FAULT))?;
        put(mem, p, &at.to_le_bytes())?;
        put(mem, b, s)?;
        put(mem, b.saturating_add(s.len()), &[0])?;
        p = p.saturating_add(4);
        b = b.saturating_add(s.len()).saturating_add(1);
    }
    Ok(())
}

fn sizes(caller: &mut Caller<'_, Host>, env: bool, count_ptr: i32, size_ptr: i32) -> Result<(), Fault> {
    charge(caller, 0)?;
    let m = memory(caller)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let list = if env { &host.env } else { &host.args };
    let count = u32::try_from(list.len()).map_err(|_| Fault::Errno(errno::OVERFLOW))?;
    let size = list.iter().try_fold(0u32, |t, s| {
        u32::try_from(s.len())
            .ok()
            .and_then(|l| t.checked_add(l))
            .and_then(|t| t.checked_add(1))
    });
    let size = size.ok_or(Fault::Errno(errno::OVERFLOW))?;
    put(mem, addr(count_ptr), &count.to_le_bytes())?;
    put(mem, addr(size_ptr), &size.to_le_bytes())?;
    Ok(())
}

fn clock_ok(id: i32) -> bool {
    // realtime, monotonic, process and thread CPU time: all read the virtual time.
    (0..=3).contains(&id)
}

fn fd_write(caller: &mut Caller<'_, Host>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> Result<(), Fault> {
    charge(caller, 0)?;
    let to_stdout = match caller.data().fds.get(&(fd as u32)) {
        Some(Fd::Stdout) => true,
        Some(Fd::Stderr) => false,
        Some(_) => return Err(Fault::Errno(errno::BADF)),
        None => return Err(Fault::Errno(errno::BADF)),
    };
    let m = memory(caller)?;
    let (want, room) = {
        let (mem, host) = m.data_and_store_mut(&mut *caller);
        let iov = iovecs(mem, iovs, iovs_len)?;
        (total(&iov), host.output_cap.saturating_sub(host.output_len()))
    };
    let moved = want.min(room);
    charge_bytes(caller, moved)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let iov = iovecs(mem, iovs, iovs_len)?;
    let mut left = usize::try_from(moved).unwrap_or(usize::MAX);
    for (p, l) in iov {
        let n = l.min(left);
        let src = get(mem, p, n)?;
        if to_stdout {
            host.stdout.extend_from_slice(src);
        } else {
            host.stderr.extend_from_slice(src);
        }
        left = left.saturating_sub(n);
    }
    if want > room {
        return Err(Fault::Stop(Error::host(HostStop::OutputLimit)));
    }
    let n = u32::try_from(moved).map_err(|_| Fault::Errno(errno::OVERFLOW))?;
    put(mem, addr(nwritten), &n.to_le_bytes())
}

/// Reads into iovecs from `src` starting at `from`; returns the bytes copied.
fn scatter(mem: &mut [u8], iov: &[(usize, usize)], src: &[u8], from: usize) -> Result<usize, Fault> {
    let mut pos = from.min(src.len());
    let mut copied = 0usize;
    for &(p, l) in iov {
        let avail = src.get(pos..).unwrap_or(&[]);
        let n = l.min(avail.len());
        if n == 0 {
            break;
        }
        put(mem, p, avail.get(..n).unwrap_or(&[]))?;
        pos = pos.saturating_add(n);
        copied = copied.saturating_add(n);
    }
    Ok(copied)
}

fn fd_read(
    caller: &mut Caller<'_, Host>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: Option<u64>,
    nread: i32,
) -> Result<(), Fault> {
    charge(caller, 0)?;
    match (caller.data().fds.get(&(fd as u32)), offset) {
        (Some(Fd::Stdin), None) | (Some(Fd::File { .. }), _) => {}
        (Some(Fd::Stdin), Some(_)) => return Err(Fault::Errno(errno::NOTSUP)),
        (Some(Fd::Dir { .. }), _) => return Err(Fault::Errno(errno::ISDIR)),
        _ => return Err(Fault::Errno(errno::BADF)),
    }
    let m = memory(caller)?;
    // What would move, to charge for it first.
    let moved = {
        let (mem, host) = m.data_and_store_mut(&mut *caller);
        let want = total(&iovecs(mem, iovs, iovs_len)?);
        let avail = match (host.fds.get(&(fd as u32)), offset) {
            (Some(Fd::Stdin), None) => host.stdin.len().saturating_sub(host.stdin_pos) as u64,
            (Some(Fd::File { data, pos, .. }), off) => (data.len() as u64).saturating_sub(off.unwrap_or(*pos)),
            (Some(Fd::Stdin), Some(_)) => return Err(Fault::Errno(errno::NOTSUP)),
            (Some(Fd::Dir { .. }), _) => return Err(Fault::Errno(errno::ISDIR)),
            _ => return Err(Fault::Errno(errno::BADF)),
        };
        want.min(avail)
    };
    charge_bytes(caller, moved)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let iov = iovecs(mem, iovs, iovs_len)?;
    let n = match host.fds.get_mut(&(fd as u32)) {
        Some(Fd::Stdin) => {
            let n = scatter(mem, &iov, &host.stdin, host.stdin_pos)?;
            host.stdin_pos = host.stdin_pos.saturating_add(n);
            n
        }
        Some(Fd::File { data, pos, .. }) => {
            let at = usize::try_from(offset.unwrap_or(*pos)).unwrap_or(usize::MAX);
            let n = scatter(mem, &iov, data, at)?;
            if offset.is_none() {
                *pos = pos.saturating_add(n as u64);
            }
            n
        }
        _ => return Err(Fault::Errno(errno::BADF)),
    };
    let n = u32::try_from(n).map_err(|_| Fault::Errno(errno::OVERFLOW))?;
    put(mem, addr(nread), &n.to_le_bytes())
}

fn fdstat(caller: &mut Caller<'_, Host>, fd: i32, buf: i32) -> Result<(), Fault> {
    charge(caller, 24)?;
    let m = memory(caller)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let (filetype, rights, inheriting) = match host.fds.get(&(fd as u32)) {
        Some(Fd::Stdin) => (FILETYPE_CHARACTER_DEVICE, RIGHT_FD_READ | RIGHT_POLL_FD_READWRITE, 0),
        Some(Fd::Stdout | Fd::Stderr) => (FILETYPE_CHARACTER_DEVICE, RIGHT_FD_WRITE | RIGHT_POLL_FD_READWRITE, 0),
        Some(Fd::Dir { .. }) => (FILETYPE_DIRECTORY, RIGHTS_DIR, RIGHTS_DIR | RIGHTS_FILE),
        Some(Fd::File { .. }) => (FILETYPE_REGULAR_FILE, RIGHTS_FILE, 0),
        None => return Err(Fault::Errno(errno::BADF)),
    };
    let mut out = [0u8; 24];
    out[0] = filetype;
    out[8..16].copy_from_slice(&rights.to_le_bytes());
    out[16..24].copy_from_slice(&inheriting.to_le_bytes());
    put(mem, addr(buf), &out)
}

fn filestat_bytes(filetype: u8, ino: u64, size: u64) -> [u8; 64] {
    // dev 0, ino, filetype, nlink 1, size, all times 0.
    let mut out = [0u8; 64];
    out[8..16].copy_from_slice(&ino.to_le_bytes());
    out[16] = filetype;
    out[24..32].copy_from_slice(&1u64.to_le_bytes());
    out[32..40].copy_from_slice(&size.to_le_bytes());
    out
}

fn fd_filestat(caller: &mut Caller<'_, Host>, fd: i32, buf: i32) -> Result<(), Fault> {
    charge(caller, 64)?;
    let m = memory(caller)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let stat = match host.fds.get(&(fd as u32)) {
        Some(Fd::Stdin | Fd::Stdout | Fd::Stderr) => filestat_bytes(FILETYPE_CHARACTER_DEVICE, 0, 0),
        Some(Fd::Dir { .. }) => filestat_bytes(FILETYPE_DIRECTORY, 0, 0),
        Some(Fd::File { data, ino, .. }) => filestat_bytes(FILETYPE_REGULAR_FILE, *ino, data.len() as u64),
        None => return Err(Fault::Errno(errno::BADF)),
    };
    put(mem, addr(buf), &stat)
}

fn dir_of(host: &Host, fd: i32) -> Result<String, Fault> {
    match host.fds.get(&(fd as u32)) {
        Some(Fd::Dir { path }) => Ok(path.clone()),
        Some(_) => Err(Fault::Errno(errno::NOTDIR)),
        None => Err(Fault::Errno(errno::BADF)),
    }
}

#[allow(clippy::too_many_arguments, reason = "the WASI path_open signature")]
fn path_open(
    caller: &mut Caller<'_, Host>,
    dirfd: i32,
    path: i32,
    path_len: i32,
    oflags: i32,
    rights: i64,
    fdflags: i32,
    out: i32,
) -> Result<(), Fault> {
    charge(caller, addr(path_len) as u64)?;
    let m = memory(caller)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let base = dir_of(host, dirfd)?;
    let rel = get(mem, addr(path), addr(path_len))?;
    let full = host.resolve(&base, rel)?;
    if oflags & (OFLAGS_CREAT | OFLAGS_EXCL | OFLAGS_TRUNC) != 0
        || fdflags & FDFLAGS_APPEND != 0
        || (rights as u64) & RIGHT_FD_WRITE != 0
    {
        return Err(Fault::Errno(errno::ROFS));
    }
    let fd = if let Some((data, ino)) = host.files.get(&full) {
        if oflags & OFLAGS_DIRECTORY != 0 {
            return Err(Fault::Errno(errno::NOTDIR));
        }
        Fd::File {
            data: data.clone(),
            pos: 0,
            ino: *ino,
        }
    } else if host.is_dir(&full) {
        Fd::Dir { path: full }
    } else {
        return Err(Fault::Errno(errno::NOENT));
    };
    let n = host.alloc_fd(fd)?;
    put(mem, addr(out), &n.to_le_bytes())
}

fn path_filestat(caller: &mut Caller<'_, Host>, dirfd: i32, path: i32, path_len: i32, buf: i32) -> Result<(), Fault> {
    charge(caller, (addr(path_len) as u64).saturating_add(64))?;
    let m = memory(caller)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let base = dir_of(host, dirfd)?;
    let rel = get(mem, addr(path), addr(path_len))?;
    let full = host.resolve(&base, rel)?;
    let stat = if let Some((data, ino)) = host.files.get(&full) {
        filestat_bytes(FILETYPE_REGULAR_FILE, *ino, data.len() as u64)
    } else if host.is_dir(&full) {
        filestat_bytes(FILETYPE_DIRECTORY, 0, 0)
    } else {
        return Err(Fault::Errno(errno::NOENT));
    };
    put(mem, addr(buf), &stat)
}

fn fd_seek(caller: &mut Caller<'_, Host>, fd: i32, offset: i64, whence: i32, out: i32) -> Result<(), Fault> {
    charge(caller, 8)?;
    let m = memory(caller)?;
    let (mem, host) = m.data_and_store_mut(&mut *caller);
    let new = match host.fds.get_mut(&(fd as u32)) {
        Some(Fd::File { data, pos, .. }) => {
            let base = match whence {
                0 => 0i128,
                1 => i128::from(*pos),
                2 => data.len() as i128,
                _ => return Err(Fault::Errno(errno::INVAL)),
            };
            let new = base.saturating_add(i128::from(offset));
            let new = u64::try_from(new).map_err(|_| Fault::Errno(errno::INVAL))?;
            *pos = new;
            new
        }
        Some(Fd::Stdin | Fd::Stdout | Fd::Stderr) => return Err(Fault::Errno(70)), // ESPIPE
        Some(Fd::Dir { .. }) => return Err(Fault::Errno(errno::ISDIR)),
        None => return Err(Fault::Errno(errno::BADF)),
    };
    put(mem, addr(out), &new.to_le_bytes())
}

/// Links the subset into `linker`.
pub(crate) fn define(linker: &mut Linker<Host>) -> Result<(), wasmi::errors::LinkerError> {
    let w = WASI_MODULE;
    linker.func_wrap(w, "args_get", |mut c: Caller<'_, Host>, ptrs: i32, buf: i32| {
        finish(string_list(&mut c, false, ptrs, buf))
    })?;
    linker.func_wrap(w, "environ_get", |mut c: Caller<'_, Host>, ptrs: i32, buf: i32| {
        finish(string_list(&mut c, true, ptrs, buf))
    })?;
    linker.func_wrap(w, "args_sizes_get", |mut c: Caller<'_, Host>, n: i32, s: i32| {
        finish(sizes(&mut c, false, n, s))
    })?;
    linker.func_wrap(w, "environ_sizes_get", |mut c: Caller<'_, Host>, n: i32, s: i32| {
        finish(sizes(&mut c, true, n, s))
    })?;
    linker.func_wrap(w, "clock_res_get", |mut c: Caller<'_, Host>, id: i32, out: i32| {
        finish((|| {
            charge(&mut c, 8)?;
            if !clock_ok(id) {
                return Err(Fault::Errno(errno::INVAL));
            }
            let m = memory(&c)?;
            put(m.data_mut(&mut c), addr(out), &1_000_000u64.to_le_bytes())
        })())
    })?;
    linker.func_wrap(
        w,
        "clock_time_get",
        |mut c: Caller<'_, Host>, id: i32, _precision: i64, out: i32| {
            finish((|| {
                charge(&mut c, 8)?;
                if !clock_ok(id) {
                    return Err(Fault::Errno(errno::INVAL));
                }
                let m = memory(&c)?;
                let (mem, host) = m.data_and_store_mut(&mut c);
                put(mem, addr(out), &host.time_ns.to_le_bytes())
            })())
        },
    )?;
    linker.func_wrap(w, "fd_close", |mut c: Caller<'_, Host>, fd: i32| {
        finish((|| {
            charge(&mut c, 0)?;
            let fd = fd as u32;
            if fd <= PREOPEN_FD {
                return Err(Fault::Errno(if c.data().fds.contains_key(&fd) {
                    errno::NOTSUP
                } else {
                    errno::BADF
                }));
            }
            match c.data_mut().fds.remove(&fd) {
                Some(_) => Ok(()),
                None => Err(Fault::Errno(errno::BADF)),
            }
        })())
    })?;
    linker.func_wrap(w, "fd_fdstat_get", |mut c: Caller<'_, Host>, fd: i32, buf: i32| {
        finish(fdstat(&mut c, fd, buf))
    })?;
    linker.func_wrap(w, "fd_filestat_get", |mut c: Caller<'_, Host>, fd: i32, buf: i32| {
        finish(fd_filestat(&mut c, fd, buf))
    })?;
    linker.func_wrap(w, "fd_prestat_get", |mut c: Caller<'_, Host>, fd: i32, buf: i32| {
        finish((|| {
            charge(&mut c, 8)?;
            if fd as u32 != PREOPEN_FD || !c.data().fds.contains_key(&PREOPEN_FD) {
                return Err(Fault::Errno(errno::BADF));
            }
            let m = memory(&c)?;
            let mut out = [0u8; 8]; // tag 0: directory
            out[4..8].copy_from_slice(&(PREOPEN_NAME.len() as u32).to_le_bytes());
            put(m.data_mut(&mut c), addr(buf), &out)
        })())
    })?;
    linker.func_wrap(
        w,
        "fd_prestat_dir_name",
        |mut c: Caller<'_, Host>, fd: i32, buf: i32, len: i32| {
            finish((|| {
                charge(&mut c, PREOPEN_NAME.len() as u64)?;
                if fd as u32 != PREOPEN_FD || !c.data().fds.contains_key(&PREOPEN_FD) {
                    return Err(Fault::Errno(errno::BADF));
                }
                if addr(len) < PREOPEN_NAME.len() {
                    return Err(Fault::Errno(errno::NAMETOOLONG));
                }
                let m = memory(&c)?;
                put(m.data_mut(&mut c), addr(buf), PREOPEN_NAME.as_bytes())
            })())
        },
    )?;
    linker.func_wrap(
        w,
        "fd_read",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, out: i32| finish(fd_read(&mut c, fd, iovs, n, None, out)),
    )?;
    linker.func_wrap(
        w,
        "fd_pread",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, offset: i64, out: i32| {
            finish(fd_read(&mut c, fd, iovs, n, Some(offset as u64), out))
        },
    )?;
    linker.func_wrap(
        w,
        "fd_seek",
        |mut c: Caller<'_, Host>, fd: i32, off: i64, whence: i32, out: i32| {
            finish(fd_seek(&mut c, fd, off, whence, out))
        },
    )?;
    linker.func_wrap(w, "fd_tell", |mut c: Caller<'_, Host>, fd: i32, out: i32| {
        finish(fd_seek(&mut c, fd, 0, 1, out))
    })?;
    linker.func_wrap(
        w,
        "fd_write",
        |mut c: Caller<'_, Host>, fd: i32, iovs: i32, n: i32, out: i32| finish(fd_write(&mut c, fd, iovs, n, out)),
    )?;
    linker.func_wrap(
        w,
        "path_open",
        |mut c: Caller<'_, Host>,
         fd: i32,
         _dirflags: i32,
         path: i32,
         path_len: i32,
         oflags: i32,
         rights: i64,
         _inheriting: i64,
         fdflags: i32,
         out: i32| { finish(path_open(&mut c, fd, path, path_len, oflags, rights, fdflags, out)) },
    )?;
    linker.func_wrap(
        w,
        "path_filestat_get",
        |mut c: Caller<'_, Host>, fd: i32, _flags: i32, path: i32, path_len: i32, buf: i32| {
            finish(path_filestat(&mut c, fd, path, path_len, buf))
        },
    )?;
    linker.func_wrap(
        w,
        "proc_exit",
        |mut c: Caller<'_, Host>, code: i32| -> Result<(), Error> {
            c.data_mut().exit = Some(code);
            Err(Error::i32_exit(code))
        },
    )?;
    linker.func_wrap(w, "random_get", |mut c: Caller<'_, Host>, buf: i32, len: i32| {
        finish((|| {
            charge(&mut c, addr(len) as u64)?;
            let m = memory(&c)?;
            let (mem, host) = m.data_and_store_mut(&mut c);
            let dst = get_mut(mem, addr(buf), addr(len))?;
            host.drbg.fill(dst);
            Ok(())
        })())
    })?;
    linker.func_wrap(w, "sched_yield", |mut c: Caller<'_, Host>| finish(charge(&mut c, 0)))?;
    Ok(())
}

/// Links a stub returning `ENOSYS` for a function outside the subset.
pub(crate) fn define_enosys(
    linker: &mut Linker<Host>,
    name: &str,
    ty: wasmi::FuncType,
) -> Result<(), wasmi::errors::LinkerError> {
    linker.func_new(WASI_MODULE, name, ty, |mut c: Caller<'_, Host>, _params, results| {
        if let Err(Fault::Stop(e)) = charge(&mut c, 0) {
            return Err(e);
        }
        if let Some(r) = results.first_mut() {
            *r = wasmi::Val::I32(i32::from(errno::NOSYS));
        }
        Ok(())
    })?;
    Ok(())
}
