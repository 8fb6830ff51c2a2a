;; A probe of the wasi:http host (ADR 0015): a wasi:http/incoming-handler@0.2.0 component whose handle runs a test's
;; core wasm in a block $answer that leaves an i32 (or branches to $answer with one), and answers with that number as
;; the response's status and no body. The test adds the imports it probes (functions of the imported wasi:io/poll,
;; wasi:io/streams and wasi:http/types instances, whole instances) and the core functions lowered from them:
;; Components.Probe fills in the upper-case placeholders below.
;; Memory: 4 pages; 0..4095 is scratch for the test's return areas and data, the bump allocator starts at 4096.
(component $probe
  (import "wasi:io/error@0.2.0" (instance $error
    (export "error" (type (sub resource)))))
  (alias export $error "error" (type $io-error))
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $pollable (sub resource)))
    PROBE_POLL))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer $probe $io-error (type $error0))
    (export "error" (type $error (eq $error0)))
    (alias outer $probe $pollable (type $pollable0))
    (export "pollable" (type $pollable (eq $pollable0)))
    (export "input-stream" (type $input-stream (sub resource)))
    (export "output-stream" (type $output-stream (sub resource)))
    (type $stream-error-def (variant (case "last-operation-failed" (own $error)) (case "closed")))
    (export "stream-error" (type $stream-error (eq $stream-error-def)))
    PROBE_STREAMS))
  (alias export $streams "input-stream" (type $input-stream))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:http/types@0.2.0" (instance $types
    (alias outer $probe $input-stream (type $input-stream0))
    (export "input-stream" (type $input-stream (eq $input-stream0)))
    (alias outer $probe $output-stream (type $output-stream0))
    (export "output-stream" (type $output-stream (eq $output-stream0)))
    (export "fields" (type $fields (sub resource)))
    (export "incoming-request" (type $incoming-request (sub resource)))
    (export "outgoing-response" (type $outgoing-response (sub resource)))
    (export "outgoing-body" (type $outgoing-body (sub resource)))
    (export "response-outparam" (type $response-outparam (sub resource)))
    (type $error-code-def (variant (case "DNS-timeout") (case "internal-error" (option string))))
    (export "error-code" (type $error-code (eq $error-code-def)))
    (type $header-error-def (variant (case "invalid-syntax") (case "forbidden") (case "immutable")))
    (export "header-error" (type $header-error (eq $header-error-def)))
    (export "[constructor]fields" (func (result (own $fields))))
    (export "[constructor]outgoing-response" (func (param "headers" (own $fields)) (result (own $outgoing-response))))
    (export "[method]outgoing-response.set-status-code" (func (param "self" (borrow $outgoing-response)) (param "status-code" u16) (result (result))))
    (export "[static]response-outparam.set" (func (param "param" (own $response-outparam)) (param "response" (result (own $outgoing-response) (error $error-code)))))
    PROBE_TYPES))
  (alias export $types "incoming-request" (type $incoming-request))
  (alias export $types "response-outparam" (type $response-outparam))
  (alias export $types "fields" (type $fields))
  (alias export $types "outgoing-body" (type $outgoing-body))
  PROBE_IMPORTS

  (core module $memory
    (memory (export "memory") 4)
    (global $heap (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $at) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.add (i32.div_u (local.get 3) (i32.const 65536)) (i32.const 1))))))
      (local.get $at)))
  (core instance $memory-instance (instantiate $memory))
  (alias core export $memory-instance "memory" (core memory $mem))
  (alias core export $memory-instance "realloc" (core func $realloc))

  (core func $fields-new-core (canon lower (func $types "[constructor]fields")))
  (core func $response-new-core (canon lower (func $types "[constructor]outgoing-response")))
  (core func $set-status-core (canon lower (func $types "[method]outgoing-response.set-status-code")))
  (core func $outparam-set-core (canon lower (func $types "[static]response-outparam.set") (memory $mem) (realloc $realloc)))
  PROBE_LOWERED

  (core module $handler
    (import "env" "memory" (memory 0))
    (import "host" "fields-new" (func $fields-new (result i32)))
    (import "host" "response-new" (func $response-new (param i32) (result i32)))
    (import "host" "set-status" (func $set-status (param i32 i32) (result i32)))
    (import "host" "outparam-set" (func $outparam-set (param i32 i32 i32 i32 i32 i32)))
    PROBE_CORE_IMPORTS
    (func (export "handle") (param $request i32) (param $outparam i32)
      (local $status i32) (local $response i32) (local $a i32) (local $b i32) (local $c i32) (local $i i32) (local $x i64)
      (local.set $status (block $answer (result i32) PROBE_BODY))
      (local.set $response (call $response-new (call $fields-new)))
      (if (call $set-status (local.get $response) (local.get $status)) (then unreachable))
      (call $outparam-set (local.get $outparam) (i32.const 0) (local.get $response) (i32.const 0) (i32.const 0) (i32.const 0))))

  (core instance $handler-instance (instantiate $handler
    (with "env" (instance (export "memory" (memory $mem))))
    (with "host" (instance
      (export "fields-new" (func $fields-new-core))
      (export "response-new" (func $response-new-core))
      (export "set-status" (func $set-status-core))
      (export "outparam-set" (func $outparam-set-core))
      PROBE_CORE_EXPORTS))))

  (type $handle-type (func (param "request" (own $incoming-request)) (param "response-out" (own $response-outparam))))
  (func $handle (type $handle-type) (canon lift (core func $handler-instance "handle")))
  (instance $handler-export
    (export "incoming-request" (type $incoming-request))
    (export "response-outparam" (type $response-outparam))
    (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $handler-export)))
