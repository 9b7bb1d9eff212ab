"""Evaluation: replay held-out conversations against models through the chat API and score the replies."""
