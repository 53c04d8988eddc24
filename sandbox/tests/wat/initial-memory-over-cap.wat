;; 1,000 pages (62.5 MiB) of initial memory.
(module
  (memory (export "memory") 1000)
  (func (export "_start")))
