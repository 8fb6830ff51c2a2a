;; A proplet plugin component of `propeller:proplet-plugin@0.1.0`, world `proplet-plugin`, interface `lifecycle`
;; (spec propeller-edge.md §5). authorize denies daemons ("daemons are not allowed here") and allows the rest; enrich
;; adds PLUGIN=component; on-task-start does nothing. AUTHORIZE_PRELUDE runs first in authorize, COMPLETE_BODY is
;; on-task-complete (the tests put a trap or a spin there, or nothing). Assembled at test time by Wasmtime's text parser (tests/Shared/Components.cs).
(component $plugin
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $at) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.const 1)))))
      (local.get $at))
    (data (i32.const 256) "daemons are not allowed here")
    (data (i32.const 512) "PLUGIN")
    (data (i32.const 528) "component")
    ;; the one-element env list: (key ptr, key len, value ptr, value len)
    (data (i32.const 544) "\00\02\00\00\06\00\00\00\10\02\00\00\09\00\00\00")
    ;; task-info flattens to 12 i32: id, name, image-url, cli-args, env (pointer and length each), daemon, encrypted.
    (func (export "authorize")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (param $daemon i32) (param $encrypted i32) (result i32)
      AUTHORIZE_PRELUDE
      ;; authorize-response { allow: bool, reason: option<string> }: allow at 0, option tag at 4, string at 8 and 12.
      (i32.store8 (i32.const 64) (i32.eqz (local.get $daemon)))
      (i32.store8 (i32.const 68) (local.get $daemon))
      (i32.store (i32.const 72) (i32.const 256))
      (i32.store (i32.const 76) (i32.const 28))
      (i32.const 64))
    (func (export "enrich") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.store (i32.const 96) (i32.const 544))
      (i32.store (i32.const 100) (i32.const 1))
      (i32.const 96))
    (func (export "on-task-start") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32))
    ;; task-result flattens to 9 i32: task-id (2), success, output (tag + 2), error (tag + 2).
    (func (export "on-task-complete") (param i32 i32 i32 i32 i32 i32 i32 i32 i32)
      COMPLETE_BODY))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "cabi_realloc" (core func $realloc))

  (type $task-info-def (record
    (field "id" string) (field "name" string) (field "image-url" string) (field "cli-args" (list string))
    (field "env" (list (tuple string string))) (field "daemon" bool) (field "encrypted" bool)))
  (export $task-info "task-info" (type $task-info-def))
  (type $authorize-response-def (record (field "allow" bool) (field "reason" (option string))))
  (export $authorize-response "authorize-response" (type $authorize-response-def))
  (type $enrich-response-def (record (field "env" (list (tuple string string)))))
  (export $enrich-response "enrich-response" (type $enrich-response-def))
  (type $task-result-def (record
    (field "task-id" string) (field "success" bool) (field "output" (option string)) (field "error" (option string))))
  (export $task-result "task-result" (type $task-result-def))

  (func $authorize (param "task" $task-info) (result $authorize-response)
    (canon lift (core func $i "authorize") (memory $mem) (realloc $realloc)))
  (func $enrich (param "task" $task-info) (result $enrich-response)
    (canon lift (core func $i "enrich") (memory $mem) (realloc $realloc)))
  (func $on-task-start (param "task" $task-info)
    (canon lift (core func $i "on-task-start") (memory $mem) (realloc $realloc)))
  (func $on-task-complete (param "result" $task-result)
    (canon lift (core func $i "on-task-complete") (memory $mem) (realloc $realloc)))
  (instance $lifecycle
    (export "task-info" (type $task-info))
    (export "authorize-response" (type $authorize-response))
    (export "enrich-response" (type $enrich-response))
    (export "task-result" (type $task-result))
    (export "authorize" (func $authorize))
    (export "enrich" (func $enrich))
    (export "on-task-start" (func $on-task-start))
    (export "on-task-complete" (func $on-task-complete)))
  (export "propeller:proplet-plugin/lifecycle@0.1.0" (instance $lifecycle))
)
