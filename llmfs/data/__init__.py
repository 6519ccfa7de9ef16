"""Data: documents, readers and the token streams the training loop consumes."""
