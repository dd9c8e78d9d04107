;; forever: two jobs that never finish.
;;   job_forever  spins without ever calling the host: the fuel limit (or a time limit, or a
;;                forced pause/cancel through epoch interruption) is what stops it.
;;   job_polite   spins too, but asks sdjobs.should_stop on every turn and stops when told.
(module
  (import "sdjobs" "should_stop" (func $should_stop (result i32)))

  (func (export "job_forever") (result i32)
    (loop $spin (br $spin))
    (i32.const 0))

  (func (export "job_polite") (result i32)
    (loop $turn
      (br_if $turn (i32.eqz (call $should_stop))))
    (i32.const 1)))
