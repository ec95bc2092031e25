// Runs graphql-http's GraphQL-over-HTTP server audits against a running server and prints
// one JSON array: [{id, name, status: "ok" | "warn" | "error", reason}].
//   node audit.mjs http://127.0.0.1:8000/graphql
// AUDIT_HEADERS (a JSON object) adds headers to every request the audits send, e.g. a token
// once the API requires one, or the CSRF header: {"X-CRM-CSRF": "1"}.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}
const extraHeaders = JSON.parse(process.env.AUDIT_HEADERS || '{}');

function fetchWithHeaders(input, init = {}) {
  const headers = new Headers(init.headers);
  for (const [name, value] of Object.entries(extraHeaders)) headers.set(name, value);
  return fetch(input, { ...init, headers });
}

const results = [];
for (const { id, name, fn } of serverAudits({ url, fetchFn: fetchWithHeaders })) {
  const result = await fn();
  results.push({
    id,
    name,
    status: result.status,
    reason: result.status === 'ok' ? null : result.reason,
  });
}
console.log(JSON.stringify(results));
