"""Table storage: Tiled table structures, Arrow IPC bodies, Parquet files and SQL (ADBC) tables.

* :mod:`.arrow_io` parses structures and request bodies and checks a body against a structure;
* :mod:`.parquet_store` keeps uploaded tables as one Parquet file per partition;
* :mod:`.sql_store` keeps appendable tables in a SQL database (SQLite or PostgreSQL).

The modules are not imported here so that importing the package stays cheap.
"""
