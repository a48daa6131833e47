"""lemur: end-to-end multimodal recommendation (LEMUR) on PyTorch Lightning."""

__version__ = "0.1.0"
