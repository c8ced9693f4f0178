"""pytest-minigram: performance regression testing with pytest."""

__version__ = "0.1.0"
