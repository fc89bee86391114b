"""`python -m src.evaluate`: score a trained or bundled model on benchmark sets (src/inference/evaluate.py)."""

from src.config_groups import check_group_choices
from src.inference.evaluate import main

if __name__ == "__main__":
    check_group_choices("evaluate")
    main()
