"""The reading pipeline: pure functions from a photo to values with confidences."""
