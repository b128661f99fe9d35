"""Reading and checking rule files."""
