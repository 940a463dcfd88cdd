"""Kakehashi bridge agent: the user's local link between the browser and the card reader."""

__version__ = "0.1.0"
