"""Inference engines behind one protocol (`base.Engine`); see `registry` for names."""
