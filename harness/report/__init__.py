"""Reports read stored results only (``results/<run-id>/``); nothing here loads a model."""
