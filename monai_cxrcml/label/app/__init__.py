"""The MONAI Label app folder (``main.py``: ``MyApp``; ``zero_shot.py``: the CLASSIFICATION infer task)."""
