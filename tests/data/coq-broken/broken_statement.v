(* A statement that does not compile on its own: the type is not defined. *)
Require Import Arith.

Theorem broken_statement : forall x : NoSuchType, x = x.
Proof.
Admitted.
