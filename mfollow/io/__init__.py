"""Files in and out: video through PyAV (:mod:`mfollow.io.video`, the only importer of ``av``), frame
folders and still images, atomic writes, content hashes, and the path checks of every preflight."""
