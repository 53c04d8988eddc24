//! Tries what a sandboxed tool must not be able to do, and prints one line per attempt:
//! files outside the preopened directory, writing files, sockets, sleeping, signals, bad
//! descriptors; and prints what it sees of args, environment, clocks and randomness.
//! The sandbox's tests check every line.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

// Raw preview1 imports, for calls Rust's std does not make (or makes only after checks).
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    #[link_name = "path_open"]
    fn raw_path_open(
        fd: i32,
        dirflags: i32,
        path: *const u8,
        path_len: usize,
        oflags: i32,
        rights_base: i64,
        rights_inheriting: i64,
        fdflags: i32,
        opened: *mut i32,
    ) -> i32;
    #[link_name = "sock_accept"]
    fn raw_sock_accept(fd: i32, flags: i32, accepted: *mut i32) -> i32;
    #[link_name = "sock_recv"]
    fn raw_sock_recv(fd: i32, iovs: *const u8, iovs_len: usize, flags: i32, len: *mut usize, oflags: *mut i32) -> i32;
    #[link_name = "sock_send"]
    fn raw_sock_send(fd: i32, iovs: *const u8, iovs_len: usize, flags: i32, len: *mut usize) -> i32;
    #[link_name = "sock_shutdown"]
    fn raw_sock_shutdown(fd: i32, how: i32) -> i32;
    #[link_name = "poll_oneoff"]
    fn raw_poll_oneoff(subs: *const u8, events: *mut u8, nsubs: usize, nevents: *mut usize) -> i32;
    #[link_name = "proc_raise"]
    fn raw_proc_raise(sig: i32) -> i32;
    #[link_name = "random_get"]
    fn raw_random_get(buf: *mut u8, len: usize) -> i32;
    #[link_name = "fd_write"]
    fn raw_fd_write(fd: i32, iovs: *const u8, iovs_len: usize, written: *mut usize) -> i32;
}

const RIGHT_FD_READ: i64 = 1 << 1;
const RIGHT_FD_WRITE: i64 = 1 << 6;

fn open(path: &str, oflags: i32, rights: i64) -> String {
    let mut fd = -1;
    let e = unsafe { raw_path_open(3, 0, path.as_ptr(), path.len(), oflags, rights, 0, 0, &mut fd) };
    if e == 0 {
        format!("fd {fd}")
    } else {
        format!("errno {e}")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    println!("args {:?}", std::env::args().collect::<Vec<_>>());
    println!("env {:?}", std::env::vars().collect::<Vec<_>>());

    // Files through std (libc resolves paths against the preopened "/").
    for p in ["data.txt", "/data.txt", "/etc/passwd", "../secret", "nested/deep.txt"] {
        match std::fs::read(p) {
            Ok(b) => println!("std read {p}: ok {:?}", String::from_utf8_lossy(&b)),
            Err(e) => println!("std read {p}: {e}"),
        }
    }
    match std::fs::write("out.txt", b"x") {
        Ok(()) => println!("std write out.txt: ok"),
        Err(e) => println!("std write out.txt: {e}"),
    }
    // Raw path_open on the preopen: escapes and write access.
    println!("raw open ../etc/passwd: {}", open("../etc/passwd", 0, RIGHT_FD_READ));
    println!("raw open /etc/passwd: {}", open("/etc/passwd", 0, RIGHT_FD_READ));
    println!("raw open data.txt for write: {}", open("data.txt", 0, RIGHT_FD_WRITE));
    println!("raw open new.txt with O_CREAT: {}", open("new.txt", 1, RIGHT_FD_READ));

    // Sockets: none exist, and the calls are outside the subset.
    let mut n = 0usize;
    let mut flags = 0i32;
    let mut accepted = -1i32;
    let iov = [0u8; 8];
    unsafe {
        println!("sock_accept: errno {}", raw_sock_accept(3, 0, &mut accepted));
        println!(
            "sock_recv: errno {}",
            raw_sock_recv(3, iov.as_ptr(), 1, 0, &mut n, &mut flags)
        );
        println!("sock_send: errno {}", raw_sock_send(3, iov.as_ptr(), 1, 0, &mut n));
        println!("sock_shutdown: errno {}", raw_sock_shutdown(3, 2));
    }
    match std::net::TcpStream::connect("127.0.0.1:80") {
        Ok(_) => println!("std connect: ok"),
        Err(e) => println!("std connect: {e}"),
    }

    // Sleeping and signals.
    let subs = [0u8; 48];
    let mut events = [0u8; 32];
    unsafe {
        println!(
            "poll_oneoff: errno {}",
            raw_poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), 1, &mut n)
        );
        println!("proc_raise: errno {}", raw_proc_raise(9));
    }
    // A descriptor that does not exist.
    let msg = b"hidden";
    let iov: [u32; 2] = [msg.as_ptr() as u32, msg.len() as u32];
    unsafe {
        println!(
            "fd_write fd 7: errno {}",
            raw_fd_write(7, iov.as_ptr() as *const u8, 1, &mut n)
        );
    }

    // Clocks: one virtual time; it does not advance.
    let t1 = Instant::now();
    let mut spin = 0u64;
    for i in 0..100_000u64 {
        spin = std::hint::black_box(spin.wrapping_add(i));
    }
    let t2 = Instant::now();
    println!("monotonic elapsed {:?}", t2.duration_since(t1));
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => println!("realtime {} ms", d.as_millis()),
        Err(e) => println!("realtime before epoch: {e}"),
    }

    // Randomness: the seeded stream.
    let mut r = [0u8; 16];
    let e = unsafe { raw_random_get(r.as_mut_ptr(), r.len()) };
    println!("random_get: errno {e} bytes {}", hex(&r));
    let e = unsafe { raw_random_get(r.as_mut_ptr(), r.len()) };
    println!("random_get again: errno {e} bytes {}", hex(&r));
    eprintln!("sneaky: done");
}
