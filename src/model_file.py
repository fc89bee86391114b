"""`python -m src.model_file`: pack a run into a framework-free model file (src/inference/model_file.py)."""

from src.inference.model_file import main

if __name__ == "__main__":
    main()
