"""Minigram: a small Instagram-like app, the system under test."""

__version__ = "0.1.0"
