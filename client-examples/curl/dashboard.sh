#!/usr/bin/env bash
# Dashboard calls with curl: who am I, create a knowledge base and an article,
# list them with cursors, read the outbox.
# Usage: dashboard.sh API_KEY [BASE_URL]
set -euo pipefail
KEY="${1:?usage: dashboard.sh API_KEY [BASE_URL]}"
URL="${2:-http://127.0.0.1:8080}/graphql"

gql() {
  curl -sS "$URL" -H "x-api-key: $KEY" -H 'content-type: application/json' -d "$1"
  echo
}

gql '{"query":"{ org { id name plan creditBalance } }"}'
KB=$(gql '{"query":"mutation { createKnowledgeBase(input: {name: \"From curl\"}) { id } }"}' | sed -E 's/.*"id":"([^"]+)".*/\1/')
gql "{\"query\":\"mutation(\$kb: UUID!) { createKbArticle(input: {knowledgeBaseId: \$kb, title: \\\"Hello\\\", body: \\\"World\\\"}) { id title } }\",\"variables\":{\"kb\":\"$KB\"}}"
gql '{"query":"{ knowledgeBases(first: 5) { edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }"}'
gql '{"query":"{ events(first: 5) { nodes { kind payload createdAt } } }"}'
