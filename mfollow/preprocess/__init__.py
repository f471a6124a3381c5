"""Preparing an edit's inputs, cached per project: the project directory and its lock, the stages
(pose, align, mask), pose estimation, rendering and alignment (:mod:`mfollow.preprocess.pose`), and
person masks (:mod:`mfollow.preprocess.masks`)."""
