"""`python -m src.train`: train one model, or sweep with `-m` (the app: src/training/train.py)."""

from src.training.train import main

if __name__ == "__main__":
    main()
