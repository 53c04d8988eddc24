;; A start function that never returns: it would run inside instantiation.
(module
  (func $spin (loop $l (br $l)))
  (start $spin)
  (func (export "_start")))
