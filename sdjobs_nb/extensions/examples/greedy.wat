;; greedy: grows its memory one page (64 KiB) at a time until the host refuses, then aborts
;; the way a compiled program does when its allocator runs out (an `unreachable` trap).
(module
  (memory (export "memory") 1)

  (func (export "job_grow") (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
