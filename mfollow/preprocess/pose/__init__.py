"""Poses: the keypoint data model and its JSON format (estimators, rendering and alignment
arrive with the preprocessing stages)."""
