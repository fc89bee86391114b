"""`python -m src.upscale`: upscale photos with a trained or bundled model (src/inference/upscale.py)."""

import sys

from src.inference.memory import bound_memory
from src.inference.upscale import main

if __name__ == "__main__":
    bound_memory()  # process-wide: set when upscale is the program, not when main() is called from Python
    sys.exit(main())
