"""Self-supervised losses as plain functions of tensors, one module per loss (``sempairs.losses.nt_xent``, ...).

Every function of this package depends on torch only (plus the standard library), takes
and returns tensors, and holds no state, so it can be used without the rest of
sempairs (in the spirit of lightly's loss modules).

Conventions
-----------
* Embeddings are ``(N, D)`` tensors; where a loss is defined on the unit sphere
  the inputs are L2-normalised *inside* the function.
* Losses that exponentiate similarities (contrastive losses, DINO) or compute
  second moments (VICReg, Barlow Twins) run in at least float32 with autocast
  disabled, so calling them under ``torch.autocast(dtype=torch.bfloat16)``
  gives a float32 result. float64 inputs stay float64.
* Stop-gradients prescribed by the papers are applied inside the functions
  (``z`` in SimSiam/BYOL, ``k`` and the queue in MoCo, the teacher in DINO, the
  support set in NNCLR).
"""
