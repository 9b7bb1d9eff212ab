"""tracetune: traces → datasets → fine-tuned models → served, self-hosted.

Packages, bottom layer first (``tests/test_layers.py`` holds imports to flow downward only):

* ``errors``, ``config``, ``timeutil``, ``capabilities``, ``threads`` — typed errors, settings, time parsing,
  optional packages, the CPU threads each part of the box takes;
* ``chat`` — the message/record contract every layer shares;
* ``store`` — the database and its repositories; ``models`` — base models and tokenizers;
* ``ingest`` — LangSmith payloads → run records; ``query`` — the filter language and run listing;
* ``convert`` — runs → chat sessions → fine-tuning records (no SQL);
* ``train`` — fine-tuning jobs and the LoRA recipe; ``serve`` — chat completions and their engines;
* ``evaluate`` — replay, scoring and gates; ``loop`` — automations (retrain, evaluate, promote through a gate);
* ``server`` — the HTTP surfaces; ``demo``; ``cli`` — the command line.

Importing this package is cheap: no server, database or model code is loaded here.
"""

__version__ = "0.1.0"
