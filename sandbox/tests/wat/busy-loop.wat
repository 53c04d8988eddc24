;; Spins forever without a host call.
(module
  (func (export "_start") (loop $l (br $l))))
