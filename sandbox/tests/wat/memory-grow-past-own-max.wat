;; The module's own maximum (2 pages) refuses the grow with -1, as the spec says; the
;; module then exits 7 if it saw -1, 1 otherwise.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1 2)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 5)) (i32.const -1))
      (then (call $exit (i32.const 7)))
      (else (call $exit (i32.const 1))))))
