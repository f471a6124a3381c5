"""Learned video-quality metrics (``mfollow eval --lpips/--fid/--fvd``; extra ``mfollow[metrics]``).

Each metric names its lineage, because published numbers from different code bases are not
comparable (docs/metrics.md):

- **LPIPS** v0.1 (Zhang et al. 2018) with the ``alex`` or ``vgg`` trunk, inputs mapped to [-1, 1]
  and the spatial mean of each layer (the ``lpips`` package's defaults; the
  common_metrics_on_video_quality lineage uses ``alex`` like this). DisCo's scripts feed [0, 1]
  without rescaling: not reproduced.
- **FID**: pytorch-fid's Inception-v3 (TensorFlow's 2015-12-05 graph), 2048-d pool3 features of
  frames resized bilinearly to 299x299, Fréchet distance with ``scipy.linalg.sqrtm``.
- **FVD**: StyleGAN-V's I3D TorchScript (Kinetics-400), 400-d features of 16-frame clips with the
  detector's own rescale and resize (``rescale=True, resize=True``, as StyleGAN-V calls it on
  [0, 255] videos), Fréchet distance as for FID.

The networks are our own modules (:mod:`.backbones`, :mod:`.inception`) loading the published
files through the weights resolver (``mfollow weights download lpips-alex`` ...), except I3D,
which is the TorchScript file itself. FID and FVD are distribution distances: over the frames
(FID) or clips (FVD) of one video they are weak statistics; over many videos use
:func:`mfollow.metrics.learned.frechet.frechet_distance` on pooled features.
"""
