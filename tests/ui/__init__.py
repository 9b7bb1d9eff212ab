"""Tests of the web UI (tracetune/server/ui/)."""
