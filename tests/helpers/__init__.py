"""Helpers that test modules of several folders share: a test module imports these, never another test module or a
conftest."""
