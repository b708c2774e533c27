"""Daily Papers: a personalised research-paper email digest."""

__version__ = "0.1.0"
