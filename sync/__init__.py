"""Sync: the device side (outbox batches, signed requests, backoff, the sync service) and the
cloud endpoint (a framework-free core, its Starlette app and its Lambda handler).

`sync` uses `edge_ocr`; `edge_ocr` never imports `sync`.
"""
