"""Sources of images: watched folders and cameras."""
