;; A WASI preview 2 command (wasi:cli/run@0.2.0, spec §2.6): writes STDOUT_TEXT to stdout and STDERR_TEXT to stderr
;; (each REPEAT times), then RUN_BODY decides the outcome (0 = ok, 1 = err, or a trap). The tests fill in the capitals.
;; Imports are declared as wit-component declares them: wasi:io/streams reuses wasi:io/error's resource.
(component $command
  (import "wasi:io/error@0.2.0" (instance $io-error
    (export "error" (type (sub resource)))))
  (alias export $io-error "error" (type $error))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (export "output-stream" (type $output-stream (sub resource)))
    (alias outer $command $error (type $outer-error))
    (export "error" (type $stream-error-resource (eq $outer-error)))
    (type $stream-error-def (variant (case "last-operation-failed" (own $stream-error-resource)) (case "closed")))
    (export "stream-error" (type $stream-error (eq $stream-error-def)))
    (export "[method]output-stream.blocking-write-and-flush"
      (func (param "self" (borrow $output-stream)) (param "contents" (list u8)) (result (result (error $stream-error)))))))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:cli/stdout@0.2.0" (instance $stdout
    (alias outer $command $output-stream (type $outer-stream))
    (export "output-stream" (type $stream (eq $outer-stream)))
    (export "get-stdout" (func (result (own $stream))))))
  (import "wasi:cli/stderr@0.2.0" (instance $stderr
    (alias outer $command $output-stream (type $outer-stream))
    (export "output-stream" (type $stream (eq $outer-stream)))
    (export "get-stderr" (func (result (own $stream))))))

  (core module $memory-module (memory (export "memory") 1))
  (core instance $memory-instance (instantiate $memory-module))
  (alias core export $memory-instance "memory" (core memory $memory))
  (alias export $streams "[method]output-stream.blocking-write-and-flush" (func $write))
  (alias export $stdout "get-stdout" (func $get-stdout))
  (alias export $stderr "get-stderr" (func $get-stderr))
  (core func $write-core (canon lower (func $write) (memory $memory)))
  (core func $get-stdout-core (canon lower (func $get-stdout)))
  (core func $get-stderr-core (canon lower (func $get-stderr)))
  (core instance $host
    (export "memory" (memory $memory))
    (export "write" (func $write-core))
    (export "get-stdout" (func $get-stdout-core))
    (export "get-stderr" (func $get-stderr-core)))

  (core module $main
    (import "host" "memory" (memory 1))
    (import "host" "write" (func $write (param i32 i32 i32 i32)))
    (import "host" "get-stdout" (func $get-stdout (result i32)))
    (import "host" "get-stderr" (func $get-stderr (result i32)))
    (data (i32.const 1024) "STDOUT_TEXT")
    (data (i32.const 32768) "STDERR_TEXT")
    (func (export "run") (result i32)
      (local $out i32)
      (local $err i32)
      (local $n i32)
      (local.set $out (call $get-stdout))
      (local.set $err (call $get-stderr))
      (local.set $n (i32.const REPEAT))
      (block $done
        (loop $again
          (br_if $done (i32.eqz (local.get $n)))
          (if (i32.gt_u (i32.const STDOUT_LENGTH) (i32.const 0))
            (then (call $write (local.get $out) (i32.const 1024) (i32.const STDOUT_LENGTH) (i32.const 0))))
          (if (i32.gt_u (i32.const STDERR_LENGTH) (i32.const 0))
            (then (call $write (local.get $err) (i32.const 32768) (i32.const STDERR_LENGTH) (i32.const 0))))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $again)))
      RUN_BODY))
  (core instance $main-instance (instantiate $main (with "host" (instance $host))))
  (func $run (result (result)) (canon lift (core func $main-instance "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance))
)
