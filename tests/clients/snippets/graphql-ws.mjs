import { createClient } from "graphql-ws";

// url: ws://127.0.0.1:8000/graphql (wss:// behind TLS). Browsers have WebSocket; in Node
// before v22 pass { webSocketImpl: WebSocket } from the `ws` package as options.
export function crmWsClient(url, token, options = {}) {
  return createClient({
    url,
    connectionParams: { Authorization: `Bearer ${token}` }, // or { token }
    ...options,
  });
}

const STAGE_CHANGES = `subscription Changes($after: String) {
  leadStageChanged(after: $after) { lead { id stage } from to at cursor }
}`;

// Calls onChange with every stage change. After a dropped connection graphql-ws resubscribes
// with this same `variables` object, so `after` (the last cursor seen) replays what was missed.
export function followStageChanges(client, onChange, onError = console.error) {
  const variables = { after: null };
  return client.subscribe(
    { query: STAGE_CHANGES, variables },
    {
      next: ({ data, errors }) => {
        if (errors) return onError(errors); // e.g. UNAUTHENTICATED once the token expires
        variables.after = data.leadStageChanged.cursor;
        onChange(data.leadStageChanged);
      },
      error: onError,
      complete: () => {},
    },
  );
}
