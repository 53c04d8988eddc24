;; Asks for 60 KiB of random bytes, forever: host calls cost fuel by the byte.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l (drop (call $random (i32.const 0) (i32.const 61440))) (br $l))))
