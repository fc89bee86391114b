"""`python -m src.report`: the comparison of a sweep's runs (src/report/report.py)."""

from src.report.report import main

main()
