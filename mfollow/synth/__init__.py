"""The synthetic puppet world: articulated puppets with exact poses, masks and edited videos.

- :func:`make_pair` builds a source / target / ground-truth-edit triple from a seed;
- :class:`PuppetPairs` renders training examples on the fly;
- :func:`mfollow.synth.files.write_pair` writes a pair to disk (``mfollow synth``).
"""

from mfollow.synth.world import CAMERAS, Pair, PuppetPairs, PuppetVideo, make_pair

__all__ = ["CAMERAS", "Pair", "PuppetPairs", "PuppetVideo", "make_pair"]
