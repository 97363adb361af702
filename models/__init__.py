"""Build-time model tools: pinned sources, fetch, graph rewrites, conversion, accuracy checks.

The edge agent never imports this package; it reads what `edge_ocr_models.build.build` writes through
`edge_ocr.ocr.modelstore`.
"""
