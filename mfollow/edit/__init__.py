"""The use case "edit a video": the one path that the CLI, the Python API, batches, the demo and the
benchmarks share.

request (:class:`EditRequest`, the one place preset defaults are resolved) -> preflight (every input,
option and output checked before any work) -> prepare (the pose, align and mask stages) -> inputs
(lazy per-window reads) -> run (conditioning, sampling, resume state) -> output (decode, person
paste, composite, write). :class:`MotionFollowerPipeline` is the library face.
"""
