Require Import Arith.

Theorem small_sum :
  1 * 3^3 + 2 * 3^2 + 2 * 3 + 2 = 53.
Proof.
Admitted.
