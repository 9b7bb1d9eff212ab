"""The LangSmith-compatible surface (``/api/v1``): ``protocol`` (pydantic shapes mirroring LangSmith's) and
``routes`` (thin: parse, call one service, shape the answer)."""
