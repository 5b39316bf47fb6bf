#!/usr/bin/env node
// Server-side (Node): the `userHash` of a signed-in user for a chat widget.
//
//   WAYFINDER_IDENTITY_SECRET=wf_id_… node identity/hash.mjs USER_ID
//
// Compute it on your server, where the widget's identity secret lives (it is
// shown once, by createChatWidget or rotateChatWidgetIdentitySecret), and
// hand it to the page with the user id, e.g. rendered into the HTML:
//   wayfinder.identify({ userId, userHash, traits: { email, plan } })
// Never send the secret itself to a browser.
import { createHmac } from "node:crypto";

export function userHash(identitySecret, userId) {
  return createHmac("sha256", identitySecret).update(userId, "utf8").digest("hex");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const secret = process.env.WAYFINDER_IDENTITY_SECRET;
  const userId = process.argv[2];
  if (!secret || !userId) {
    console.error("usage: WAYFINDER_IDENTITY_SECRET=wf_id_… node identity/hash.mjs USER_ID");
    process.exit(2);
  }
  console.log(userHash(secret, userId));
}
