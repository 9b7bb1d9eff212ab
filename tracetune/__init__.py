"""tracetune: traces → datasets → fine-tuned models → served, self-hosted.

Importing this package is cheap: no server, database or model code is loaded here.
"""

__version__ = "0.1.0"
