;; A minimal wasi:http proxy component (spec §2.11): imports wasi:http/types' request and response-outparam resources
;; and exports wasi:http/incoming-handler@0.2.0#handle, which drops both (a real handler would answer through
;; response-outparam.set). The proplet cannot serve it yet (ADR 0011); the tests check the error it answers with.
(component $proxy
  (import "wasi:http/types@0.2.0" (instance $types
    (export "incoming-request" (type (sub resource)))
    (export "response-outparam" (type (sub resource)))))
  (alias export $types "incoming-request" (type $incoming-request))
  (alias export $types "response-outparam" (type $response-outparam))
  (core module $handler
    (func (export "handle") (param i32 i32)))
  (core instance $handler-instance (instantiate $handler))
  (type $handle-type (func (param "request" (own $incoming-request)) (param "response-out" (own $response-outparam))))
  (func $handle (type $handle-type) (canon lift (core func $handler-instance "handle")))
  (instance $handler-export
    (export "incoming-request" (type $incoming-request))
    (export "response-outparam" (type $response-outparam))
    (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $handler-export)))
