"""The SQLite store: the one connection with all SQL (database.py) and the schema migrations (migrations.py)."""
