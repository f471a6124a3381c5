"""Model weights on disk: the registry of every downloadable component, where they are found
(``--weights`` > ``MFOLLOW_WEIGHTS`` > the user data folder > the Hugging Face cache), their
download, verification and stamps (:mod:`mfollow.weights.registry`), and the authors' Google Drive
folder (:mod:`mfollow.weights.drive`)."""
