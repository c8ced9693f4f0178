"""Minigram as a target of pytest-minigram: stages, backends, journeys, the API client.

Built only on the generic plugin's public API (fixtures, hooks, `TargetInfo`), the way a
harness for another service would be. Its pytest plugin is ``minigram_harness.plugin``.
"""
