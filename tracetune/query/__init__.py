"""LangSmith filter language: parse filter strings and compile them to SQL WHERE clauses."""
