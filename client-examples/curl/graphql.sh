#!/usr/bin/env bash
# The public GraphQL operations a widget uses, with curl: the widget's
# configuration, a whole chat turn (sendMessage), and a vote on the answer.
# Usage: graphql.sh WIDGET_ID [BASE_URL]
set -euo pipefail
WIDGET="${1:?usage: graphql.sh WIDGET_ID [BASE_URL]}"
URL="${2:-http://127.0.0.1:8080}/graphql"

gql() { curl -sS "$URL" -H 'content-type: application/json' -d "$1"; echo; }
field() { sed -nE "s/.*\"$1\":\"([^\"]*)\".*/\1/p"; }

echo "== widgetConfig"
gql "{\"query\":\"query(\$w: UUID!) { widgetConfig(widgetId: \$w) { personaName greeting primaryColor labels { title } } }\",\"variables\":{\"w\":\"$WIDGET\"}}"

echo "== sendMessage"
REPLY=$(gql "{\"query\":\"mutation(\$i: TurnInput!) { sendMessage(input: \$i) { status text sessionToken messageId citations { articleId title } } }\",\"variables\":{\"i\":{\"widgetId\":\"$WIDGET\",\"message\":\"What is Wayfinder?\"}}}")
echo "$REPLY"
TOKEN=$(echo "$REPLY" | field sessionToken)
MESSAGE=$(echo "$REPLY" | field messageId)

echo "== submitFeedback (thumbs up on that answer)"
gql "{\"query\":\"mutation(\$i: SubmitFeedbackInput!) { submitFeedback(input: \$i) { ok } }\",\"variables\":{\"i\":{\"messageId\":\"$MESSAGE\",\"vote\":\"UP\",\"sessionToken\":\"$TOKEN\"}}}"
