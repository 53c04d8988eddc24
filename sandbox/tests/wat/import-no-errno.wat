;; A function outside the subset whose signature has no errno to return.
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32)))
  (func (export "_start")))
