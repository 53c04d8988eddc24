;; Grows a table by a million entries.
(module
  (table $t 1 funcref)
  (func (export "_start") (drop (table.grow $t (ref.null func) (i32.const 1000000)))))
