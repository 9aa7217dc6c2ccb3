"""The safety gate every prompt and image passes; the checkers themselves are plugins."""
