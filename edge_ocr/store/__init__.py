"""The results store: SQLite via sqlite-utils, WAL, numbered migrations. All SQL lives in this package."""
