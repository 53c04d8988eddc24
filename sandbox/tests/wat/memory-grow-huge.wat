;; One memory.grow of 65535 pages (4 GiB) with no declared maximum.
(module
  (memory (export "memory") 1)
  (func (export "_start") (drop (memory.grow (i32.const 65535)))))
