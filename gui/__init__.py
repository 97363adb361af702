"""The edge-ocr desktop GUI (PySide6): review, dashboard, settings and export over the agent's store.

Qt lives only in this package; the SQL it runs is in `edge_ocr.store.review`.
"""
