"""`python -m src.export`: a model to ONNX, checked against PyTorch (src/inference/export.py)."""

import sys

from src.inference.export import main

if __name__ == "__main__":
    sys.exit(main())
