;; counter: counts to n, checkpointing every `every` steps; a resumable sdjobs_nb extension.
;;
;; Input: up to three non-negative integers in any text, e.g. the JSON 1000 or [1000, 10, 5000]:
;;   n      how many steps to count
;;   every  checkpoint after every `every` steps (default 100; 0 = only when stopping)
;;   work   extra busy-loop iterations per step, to make the job slow enough to watch
;; State (checkpointed, 16 bytes): i (steps done, i64 LE), acc (running value, i64 LE).
;; Result: acc as a decimal number, where for each step i = 1..n
;;   acc = (acc * 31 + i + work * (work - 1) / 2) mod 2**64
(module
  (import "sdjobs" "input_size" (func $input_size (result i32)))
  (import "sdjobs" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "sdjobs" "state_size" (func $state_size (result i32)))
  (import "sdjobs" "state_read" (func $state_read (param i32 i32) (result i32)))
  (import "sdjobs" "checkpoint" (func $checkpoint (param i32 i32) (result i32)))
  (import "sdjobs" "should_stop" (func $should_stop (result i32)))
  (import "sdjobs" "progress_count" (func $progress_count (param i64 i64)))
  (import "sdjobs" "log" (func $log (param i32 i32)))
  (import "sdjobs" "set_result" (func $set_result (param i32 i32)))

  ;; 0..16 state, 16..40 parameters (n, every, work), 64..1088 input, ..1140 decimal text
  (memory (export "memory") 1)
  (data (i32.const 2048) "resumed from a checkpoint")

  (func $save (param $i i64) (param $acc i64)
    (i64.store (i32.const 0) (local.get $i))
    (i64.store (i32.const 8) (local.get $acc))
    (drop (call $checkpoint (i32.const 0) (i32.const 16))))

  (func $store_param (param $slot i32) (param $v i64)
    (i64.store (i32.add (i32.const 16) (i32.mul (local.get $slot) (i32.const 8))) (local.get $v)))

  ;; read up to three decimal numbers from the input bytes at 64..64+len into the parameters
  (func $parse (param $len i32)
    (local $p i32) (local $c i32) (local $slot i32) (local $in i32) (local $v i64)
    (call $store_param (i32.const 0) (i64.const 0))
    (call $store_param (i32.const 1) (i64.const 100))
    (call $store_param (i32.const 2) (i64.const 0))
    (block $end
      (loop $next
        (if (i32.ge_u (local.get $p) (local.get $len))
          (then
            (if (local.get $in) (then (call $store_param (local.get $slot) (local.get $v))))
            (br $end)))
        (local.set $c (i32.load8_u (i32.add (i32.const 64) (local.get $p))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
          (then
            (local.set $v (i64.add (i64.mul (local.get $v) (i64.const 10))
                                   (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))
            (local.set $in (i32.const 1)))
          (else
            (if (local.get $in)
              (then
                (call $store_param (local.get $slot) (local.get $v))
                (local.set $slot (i32.add (local.get $slot) (i32.const 1)))
                (local.set $v (i64.const 0))
                (local.set $in (i32.const 0))
                (br_if $end (i32.ge_u (local.get $slot) (i32.const 3)))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next))))

  ;; write $v in decimal so that it ends at 1140; return where it starts
  (func $utoa (param $v i64) (result i32)
    (local $p i32)
    (local.set $p (i32.const 1140))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (local.get $p))

  (func (export "job_count") (result i32)
    (local $len i32) (local $p i32)
    (local $i i64) (local $acc i64) (local $n i64) (local $every i64) (local $work i64)
    (local $k i64) (local $spin i64)
    (local.set $len (call $input_size))
    (if (i32.gt_u (local.get $len) (i32.const 1024)) (then (return (i32.const 2))))
    (drop (call $input_read (i32.const 64) (local.get $len)))
    (call $parse (local.get $len))
    (local.set $n (i64.load (i32.const 16)))
    (local.set $every (i64.load (i32.const 24)))
    (local.set $work (i64.load (i32.const 32)))
    (if (i32.eq (call $state_size) (i32.const 16))
      (then
        (drop (call $state_read (i32.const 0) (i32.const 16)))
        (local.set $i (i64.load (i32.const 0)))
        (local.set $acc (i64.load (i32.const 8)))
        (call $log (i32.const 2048) (i32.const 25))))
    (block $done
      (loop $step
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (if (call $should_stop)
          (then
            (call $save (local.get $i) (local.get $acc))
            (return (i32.const 1))))
        (local.set $spin (i64.const 0))
        (local.set $k (i64.const 0))
        (block $rested
          (loop $busy
            (br_if $rested (i64.ge_u (local.get $k) (local.get $work)))
            (local.set $spin (i64.add (local.get $spin) (local.get $k)))
            (local.set $k (i64.add (local.get $k) (i64.const 1)))
            (br $busy)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (local.set $acc (i64.add (i64.add (i64.mul (local.get $acc) (i64.const 31)) (local.get $i))
                                 (local.get $spin)))
        (call $progress_count (local.get $i) (local.get $n))
        (if (i32.and (i64.ne (local.get $every) (i64.const 0))
                     (i64.eqz (i64.rem_u (local.get $i) (select (local.get $every) (i64.const 1)
                                                                (i64.ne (local.get $every) (i64.const 0))))))
          (then (call $save (local.get $i) (local.get $acc))))
        (br $step)))
    (local.set $p (call $utoa (local.get $acc)))
    (call $set_result (local.get $p) (i32.sub (i32.const 1140) (local.get $p)))
    (i32.const 0)))
