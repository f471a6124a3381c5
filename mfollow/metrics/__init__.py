"""Scoring a result against a reference: L1/PSNR/SSIM, also inside and outside masks
(:mod:`mfollow.metrics.frames`), whole-video evaluation (:mod:`mfollow.metrics.evaluation`) and the
learned metrics LPIPS, FID and FVD (:mod:`mfollow.metrics.learned`)."""
