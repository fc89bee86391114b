"""`python -m src.train`: train one model, or sweep with `-m` (the app: src/training/train.py)."""

from src.config_groups import check_group_choices
from src.training.train import main

if __name__ == "__main__":
    check_group_choices("train")
    main()
