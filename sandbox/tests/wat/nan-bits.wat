;; Writes the bit patterns of NaN results to stdout: f32 0/0, f64 sqrt(-1), f32 NaN with a
;; payload plus 1, f64 demoted/promoted NaN. Under wasmi's deterministic profile every NaN
;; an arithmetic operation produces is the canonical one.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 100) (i32.reinterpret_f32 (f32.div (f32.const 0) (f32.const 0))))
    (i64.store (i32.const 104) (i64.reinterpret_f64 (f64.sqrt (f64.const -1))))
    (i32.store (i32.const 112) (i32.reinterpret_f32 (f32.add (f32.const nan:0x200001) (f32.const 1))))
    (i32.store (i32.const 116) (i32.reinterpret_f32 (f32.demote_f64 (f64.const -nan:0x4000000000001))))
    (i64.store (i32.const 120) (i64.reinterpret_f64 (f64.promote_f32 (f32.const -nan:0x7fffff))))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 28))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
