"""Image pipeline stages: detection, orientation, recognition (numpy/OpenCV only, no I/O)."""
