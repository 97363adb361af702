"""CLI subcommands, one module each; `edge_ocr.cli` registers them."""
