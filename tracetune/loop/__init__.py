"""Automations, the closed loop: a rule → the next dataset version of new matching runs → a fine-tuning job →
an evaluation of the candidate against the current model → a gate → the alias moved (or not), every firing recorded.

Modules: ``rules`` (the rule and its checks), ``firing`` (one firing's steps, resumable), ``runner`` (the server's
thread that fires automations and runs their firings), ``teacher`` (distillation: a teacher model answers traced
inputs, stored as runs).
"""
