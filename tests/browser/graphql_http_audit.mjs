#!/usr/bin/env node
// Runs the graphql-http project's server audits (the GraphQL-over-HTTP
// specification's conformance checks) against a GraphQL endpoint and prints
// one JSON line per audit: {name, status: "ok"|"warn"|"error", reason}.
// "error" is a failed MUST, "warn" a failed SHOULD or MAY (the name says which).
//
//   node graphql_http_audit.mjs http://127.0.0.1:8080/graphql
import { serverAudits } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node graphql_http_audit.mjs URL");
  process.exit(2);
}
for (const audit of serverAudits({ url })) {
  let result;
  try {
    result = await audit.fn();
  } catch (err) {
    result = { status: "error", reason: String(err) };
  }
  console.log(JSON.stringify({ name: audit.name, status: result.status, reason: result.reason ?? null }));
}
