#!/bin/sh
# Run once by the postgres image, on the database's first start: the gateway's own role, which owns none
# of the tables ("dialguard", the image's POSTGRES_USER, owns the schema and runs the migrations).
# README: "Two database roles".
set -eu
psql -v ON_ERROR_STOP=1 -v password="$DIALGUARD_GATEWAY_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE dialguard_gateway LOGIN PASSWORD :'password';
SQL
