import { ApolloClient, HttpLink, InMemoryCache, split } from "@apollo/client/core";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";

// The hash automatic persisted queries send: Web Crypto, in browsers (https or localhost)
// and in Node.
async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// httpUrl: http://127.0.0.1:8000/graphql, wsUrl: ws://127.0.0.1:8000/graphql.
export function crmApolloClient(httpUrl, wsUrl, token, wsOptions = {}) {
  const http = createPersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({ uri: httpUrl, headers: { Authorization: `Bearer ${token}` } }),
  );
  const ws = new GraphQLWsLink(
    createClient({
      url: wsUrl,
      connectionParams: { Authorization: `Bearer ${token}` },
      ...wsOptions,
    }),
  );
  const isSubscription = ({ query }) => {
    const definition = getMainDefinition(query);
    return definition.kind === "OperationDefinition" && definition.operation === "subscription";
  };
  return new ApolloClient({ link: split(isSubscription, ws, http), cache: new InMemoryCache() });
}
