"""Tiny random-weight models for tests and dry runs (`inpaint-worker tiny-model`). Not used at run time."""
