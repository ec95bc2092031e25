import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { createClient } from "graphql-ws";

// Queries go out as GET (urql's default), mutations as POST, subscriptions over graphql-ws.
export function crmUrqlClient(httpUrl, wsUrl, token, wsOptions = {}) {
  const ws = createClient({
    url: wsUrl,
    connectionParams: { Authorization: `Bearer ${token}` },
    ...wsOptions,
  });
  return new Client({
    url: httpUrl,
    fetchOptions: () => ({ headers: { Authorization: `Bearer ${token}` } }),
    exchanges: [
      cacheExchange,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return {
            subscribe(sink) {
              return { unsubscribe: ws.subscribe(input, sink) };
            },
          };
        },
      }),
    ],
  });
}
