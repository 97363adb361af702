"""edge-ocr: offline OCR appliance (PP-OCR on Paddle Lite, ONNX Runtime or Paddle Inference)."""

from edge_ocr.types import OcrResult, TextLine

__version__ = "0.1.0"
__all__ = ["OcrResult", "TextLine", "__version__"]
