"""Person masks: files on disk (segmenters and fallbacks arrive with the preprocessing stages)."""
