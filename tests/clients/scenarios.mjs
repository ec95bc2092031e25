// Runs one scenario of the client tier against a running server and prints its result as
// JSON. Usage: node --import ./bundler-resolution.mjs scenarios.mjs <scenario>
// Environment: CRM_URL (http://host:port), CRM_TOKEN (a manager's token), CRM_ORIGIN (for
// the origin scenarios).
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";

import { crmApolloClient } from "./snippets/apollo.mjs";
import { crmWsClient, followStageChanges } from "./snippets/graphql-ws.mjs";
import { crmUrqlClient } from "./snippets/urql.mjs";
import { gql } from "@apollo/client/core";

const base = process.env.CRM_URL;
const token = process.env.CRM_TOKEN;
const httpUrl = `${base}/graphql`;
const wsUrl = httpUrl.replace(/^http/, "ws");
const TIMEOUT_MS = 30_000; // generous: the machine is shared; nothing here measures time

const LEADS = "query Leads { leads(first: 5) { totalCount edges { node { id stage } } } }";
const CREATE_LEAD = `mutation CreateLead($name: String) {
  createLead(input: { source: MANUAL, contactName: $name }) {
    lead { id stage } errors { code message }
  }
}`;
const ADVANCE = `mutation Advance($id: ID!) {
  updateLead(input: { id: $id, stage: CONTACTED }) { lead { id stage } errors { code message } }
}`;
const ONE_LEAD_CHANGES = `subscription OneLead($id: ID) {
  leadStageChanged(leadId: $id) { lead { id stage } from to cursor }
}`;

// A graphql-ws client that sends Node a text frame when the server does; ws otherwise hands
// graphql-ws a Buffer, as a browser hands it a Blob, and graphql-ws fails.
const nodeWs = { webSocketImpl: WebSocket };

function withTimeout(promise, what) {
  return Promise.race([
    promise,
    sleep(TIMEOUT_MS, null, { ref: false }).then(() => {
      throw new Error(`timed out waiting for ${what}`);
    }),
  ]);
}

async function post(query, variables) {
  const response = await fetch(httpUrl, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

// The server reports its subscribers in /readyz. Once it counts exactly the scenario's own
// (an earlier scenario's may take a moment to go), an event made next reaches them.
function subscribers(count) {
  return withTimeout(
    (async () => {
      for (;;) {
        const ready = await (await fetch(`${base}/readyz`)).json();
        if (ready.changeFeed?.subscribers === count) return;
        await sleep(50);
      }
    })(),
    `${count} subscriber(s) on the server`,
  );
}

// Records what a client sends to /graphql (method, URL, body), to check how it sent it.
function recordRequests() {
  const sent = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = (url, init) => {
    if (String(url).startsWith(httpUrl)) {
      sent.push({ method: init?.method ?? "GET", url: String(url), body: init?.body ?? null });
    }
    return realFetch(url, init);
  };
  return { sent, restore: () => (globalThis.fetch = realFetch) };
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

// Subscribes with `subscribe(onEvent, onError)`, creates a lead through `create`, and returns
// the first event about that lead.
async function eventForNewLead(subscribe, create) {
  await subscribers(0);
  const events = [];
  const arrived = deferred();
  const stop = subscribe((event) => {
    events.push(event);
    arrived.resolve();
  }, arrived.reject);
  try {
    await subscribers(1);
    const lead = await create();
    for (;;) {
      const event = events.find((e) => e.lead.id === lead.id);
      if (event) return { lead, event };
      await withTimeout(arrived.promise, "a subscription event");
      Object.assign(arrived, deferred());
    }
  } finally {
    stop();
  }
}

function wsOperation(client, query, variables) {
  return withTimeout(
    new Promise((resolve, reject) => {
      let result;
      client.subscribe(
        { query, variables },
        { next: (value) => (result = value), error: reject, complete: () => resolve(result) },
      );
    }),
    "a result over graphql-ws",
  );
}

const scenarios = {
  async "graphql-ws"() {
    const client = crmWsClient(wsUrl, token, nodeWs);
    try {
      const query = await wsOperation(client, LEADS);
      const mutation = await wsOperation(client, CREATE_LEAD, { name: "Ada" });
      const subscription = await eventForNewLead(
        (onChange, onError) => followStageChanges(client, onChange, onError),
        async () => (await wsOperation(client, CREATE_LEAD, { name: "Grace" })).data.createLead.lead,
      );
      return { query, mutation, subscription };
    } finally {
      await client.dispose();
    }
  },

  async "graphql-ws-reconnect"() {
    // The socket is cut after the first event; while graphql-ws waits to reconnect, two more
    // leads are created. The resubscription carries `after`, so they arrive anyway, in order.
    let socket;
    const missed = [];
    const client = crmWsClient(wsUrl, token, {
      ...nodeWs,
      on: { connected: (s) => (socket = s) },
      retryWait: async () => {
        for (const name of ["Missed 1", "Missed 2"]) {
          missed.push((await post(CREATE_LEAD, { name })).data.createLead.lead);
        }
      },
    });
    await subscribers(0);
    const events = [];
    const done = deferred();
    const stop = followStageChanges(
      client,
      (change) => {
        events.push(change);
        if (events.length === 1) socket.terminate();
        if (events.length === 3) done.resolve();
      },
      done.reject,
    );
    try {
      await subscribers(1);
      const first = (await post(CREATE_LEAD, { name: "Before" })).data.createLead.lead;
      await withTimeout(done.promise, "the replayed events");
      return { leads: [first, ...missed], events };
    } finally {
      stop();
      await client.dispose();
    }
  },

  async apollo() {
    const client = crmApolloClient(httpUrl, wsUrl, token, nodeWs);
    const { sent, restore } = recordRequests();
    try {
      const first = await client.query({ query: gql(LEADS), fetchPolicy: "network-only" });
      const again = await client.query({ query: gql(LEADS), fetchPolicy: "network-only" });
      const mutation = await client.mutate({ mutation: gql(CREATE_LEAD), variables: { name: "Ada" } });
      const subscription = await eventForNewLead(
        (onEvent, onError) => {
          const observed = client
            .subscribe({ query: gql(ONE_LEAD_CHANGES) })
            .subscribe({ next: ({ data }) => onEvent(data.leadStageChanged), error: onError });
          return () => observed.unsubscribe();
        },
        async () =>
          (await client.mutate({ mutation: gql(CREATE_LEAD), variables: { name: "Grace" } })).data
            .createLead.lead,
      );
      return { query: [first.data, again.data], mutation: mutation.data, subscription, sent };
    } finally {
      restore();
      client.stop();
    }
  },

  async urql() {
    const client = crmUrqlClient(httpUrl, wsUrl, token, nodeWs);
    const { sent, restore } = recordRequests();
    try {
      const query = await client.query(LEADS, {}, { requestPolicy: "network-only" }).toPromise();
      const mutation = await client.mutation(CREATE_LEAD, { name: "Ada" }).toPromise();
      const subscription = await eventForNewLead(
        (onEvent, onError) => {
          const { unsubscribe } = client
            .subscription(ONE_LEAD_CHANGES, {})
            .subscribe((result) => (result.error ? onError(result.error) : onEvent(result.data.leadStageChanged)));
          return unsubscribe;
        },
        async () => {
          const result = await client.mutation(CREATE_LEAD, { name: "Grace" }).toPromise();
          return result.data.createLead.lead;
        },
      );
      const plain = (r) => ({ data: r.data ?? null, error: r.error?.message ?? null });
      return { query: plain(query), mutation: plain(mutation), subscription, sent };
    } finally {
      restore();
    }
  },

  // A raw handshake with an Origin header, as a browser page on that origin sends it.
  async "ws-origin"() {
    const socket = new WebSocket(wsUrl, "graphql-transport-ws", {
      origin: process.env.CRM_ORIGIN,
    });
    return withTimeout(
      new Promise((resolve) => {
        socket.on("unexpected-response", (_, response) => resolve({ refused: response.statusCode }));
        socket.on("error", (error) => resolve({ error: error.message }));
        socket.on("open", () => socket.send(JSON.stringify({ type: "connection_init", payload: { token } })));
        socket.on("message", (data, isBinary) => {
          resolve({ accepted: JSON.parse(data.toString()).type, isBinary });
          socket.close();
        });
      }),
      "the handshake",
    );
  },
};

const name = process.argv[2];
if (!(name in scenarios)) {
  console.error(`unknown scenario ${name}; one of: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const result = await scenarios[name]();
process.stdout.write(JSON.stringify(result));
process.exit(0); // sockets the clients keep for reuse must not hold the process open
