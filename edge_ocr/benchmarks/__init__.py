"""Benchmarks: OCR engines (`edge-ocr bench`) and the agent."""
