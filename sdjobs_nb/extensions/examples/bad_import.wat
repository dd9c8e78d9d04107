;; bad_import: asks for a host function the sandbox does not provide (and for WASI's fd_write),
;; so load_extension refuses it and names both imports.
(module
  (import "sdjobs" "open_file" (func $open_file (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)

  (func (export "job_sneaky") (result i32)
    (drop (call $open_file (i32.const 0) (i32.const 0)))
    (i32.const 0)))
