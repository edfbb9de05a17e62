Require Import Arith.

Theorem small_mod : 54 mod 6 = 0.
Proof.
Admitted.
