Require Import Arith.

Theorem small_mod_hard : 194 mod 11 = 7.
Proof.
Admitted.
