;; Host calls with pointers outside memory get EFAULT (21), not a trap; a bad descriptor
;; gets EBADF (8). Writes the errnos (u32 LE) to stdout.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; iovec array beyond memory
    (i32.store (i32.const 100) (call $fd_write (i32.const 1) (i32.const 70000) (i32.const 1) (i32.const 8)))
    ;; iovec pointing beyond memory
    (i32.store (i32.const 16) (i32.const 65000))
    (i32.store (i32.const 20) (i32.const 1000))
    (i32.store (i32.const 104) (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8)))
    ;; random_get spanning the end of memory, and a huge count of iovecs
    (i32.store (i32.const 108) (call $random (i32.const 65530) (i32.const 100)))
    (i32.store (i32.const 112) (call $fd_write (i32.const 1) (i32.const 0) (i32.const -1) (i32.const 8)))
    ;; result pointer at the very end
    (i32.store (i32.const 116) (call $args_sizes (i32.const 65535) (i32.const 0)))
    ;; a descriptor that is not open
    (i32.store (i32.const 120) (call $fd_write (i32.const 9) (i32.const 16) (i32.const 0) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 24))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
