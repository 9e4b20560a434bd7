"""The committed digit model and its card. Training scripts live in models/training/ and never ship."""

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent
DIGITS_MODEL = MODEL_DIR / "digits_int8.tflite"
DIGITS_CARD = MODEL_DIR / "digits_int8.json"
