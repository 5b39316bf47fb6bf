#!/usr/bin/env bash
# The REST adapters with curl: chat with a widget (two turns, one conversation)
# and send the contact form.
# Usage: rest.sh WIDGET_ID [BASE_URL]
#
# `sessionId` in the REST adapter is the opaque session token: send back what
# you got to continue the conversation (see api/src/http/rest.rs).
set -euo pipefail
WIDGET="${1:?usage: rest.sh WIDGET_ID [BASE_URL]}"
BASE="${2:-http://127.0.0.1:8080}"

field() { sed -nE "s/.*\"$1\":\"([^\"]*)\".*/\1/p"; }

echo "== POST /widgets/$WIDGET/chat"
FIRST=$(curl -sS -X POST "$BASE/widgets/$WIDGET/chat" -H 'content-type: application/json' \
  -d '{"message":"How do I install the chat widget?"}')
echo "$FIRST"
SESSION=$(echo "$FIRST" | field sessionId)

echo "== the same conversation, continued with its sessionId"
curl -sS -X POST "$BASE/widgets/$WIDGET/chat" -H 'content-type: application/json' \
  -d "{\"message\":\"And how do API keys work?\",\"sessionId\":\"$SESSION\"}"
echo

echo "== POST /chatbot/message (the contact form)"
# The form's signed challenge comes with the widget configuration, and is only
# accepted after the minimum fill time (people take a moment to type).
CONFIG=$(curl -sS "$BASE/graphql" -H 'content-type: application/json' \
  -d "{\"query\":\"{ widgetConfig(widgetId: \\\"$WIDGET\\\") { contactChallenge contactMinFillMs } }\"}")
CHALLENGE=$(echo "$CONFIG" | field contactChallenge)
WAIT_MS=$(echo "$CONFIG" | sed -nE 's/.*"contactMinFillMs":([0-9]+).*/\1/p')
sleep "$(awk "BEGIN { print ($WAIT_MS + 200) / 1000 }")"
curl -sS -X POST "$BASE/chatbot/message" -H 'content-type: application/json' \
  -d "{\"widgetId\":\"$WIDGET\",\"name\":\"Ada from curl\",\"email\":\"ada@example.com\",\"message\":\"Please call me back.\",\"honeypot\":\"\",\"challenge\":\"$CHALLENGE\"}"
echo
