#!/usr/bin/env bash
# The served OpenAPI document, checked twice: by a standard validator
# (openapi-spec-validator), then by schemathesis, which generates requests from
# it and fails on any 5xx and any response the document's schemas don't allow.
# Runs the server binary that `cargo test` built, over a fresh SQLite file.
# Usage: .ci/openapi.sh [max examples per operation, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-60}"

if [ ! -x .ci/venv/bin/schemathesis ]; then
  python3 -m venv .ci/venv
  .ci/venv/bin/pip install --quiet --disable-pip-version-check -r .ci/requirements.txt
fi

work="$(mktemp -d)"
db="sqlite://$work/openapi.db"
# A workspace made with the CLI (a server whose stderr is not a terminal
# prints no bootstrap keys); schemathesis writes with its test secret key.
target/debug/vevee-attributes migrate --database-url "$db" >/dev/null
key="$(target/debug/vevee-attributes workspace create openapi --json --database-url "$db" \
  | python3 -c 'import json, sys; print(next(k["key"] for k in json.load(sys.stdin)["keys"] if k["kind"] == "secret" and k["mode"] == "test"))')"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
target/debug/vevee-attributes serve --grpc-addr "127.0.0.1:$port" --metrics-addr "" \
  --database-url "$db" >"$work/out" 2>"$work/err" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done

curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" >"$work/openapi.json"
.ci/venv/bin/openapi-spec-validator "$work/openapi.json"

# The checks of what the document promises. Not run: positive_data_acceptance
# (a schema-valid value is still refused when it doesn't fit the attribute's
# declared type), negative_data_rejection (the JSON mapping accepts more than
# the schema says, as the gateways do: null for a scalar, a number as a
# string), and the auth checks (a body that cannot be read is 400 before the
# key is looked at, as in grpc-gateway).
(cd "$work" && "$OLDPWD/.ci/venv/bin/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  -H "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,allow_header_conformance \
  --max-examples "$examples" --workers 2 --seed 1 --no-color)
