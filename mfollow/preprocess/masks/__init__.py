"""Person masks M_r and M_e: 8-bit PNG folders on disk (``files``), the paper's segmentation model
SegDiT (``segdit``, Appendix A.1), the weight-free M_e estimates ``hull`` and ``warp``
(``fallbacks``), and binary morphology (``morphology``)."""
