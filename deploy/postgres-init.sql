-- Run once by the postgres image on an empty volume: the catalog database is POSTGRES_DB;
-- appendable tables get their own database on the same server, as the Tiled deployment guide
-- recommends (separate databases, one PostgreSQL instance is fine).
CREATE DATABASE ferrotile_tables OWNER ferrotile;
