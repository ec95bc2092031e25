// Drives Debian's headless Chromium (puppeteer-core, no browser download) for
// tests/integration/test_browser.py. Usage:
//
//   node driver.mjs graphiql '{"api": "http://127.0.0.1:8000", "operations": [...], ...}'
//   node driver.mjs origin '{"api": "...", "pagePort": 8001, "token": "...", ...}'
//
// It prints JSON lines: {"event": "subscribing"} once a subscription has been started (the
// test then makes a change through HTTP), and last {"result": {...}} with what the page saw.
// Failures are reported in the result, not thrown, so the test can say what went wrong.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import puppeteer from "puppeteer-core";

const HERE = new URL(".", import.meta.url).pathname;
const TIMEOUT_MS = 30000; // generous: the machine is shared; nothing here measures time

// The flags the issue asks for: no sandbox (CI runs as root), nothing that talks to Google.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

function emit(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

async function withBrowser(run) {
  const profile = mkdtempSync(join(tmpdir(), "crm-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [...CHROMIUM_ARGS, `--user-data-dir=${profile}`],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    const log = { console: [], pageErrors: [] };
    page.on("console", (message) => log.console.push(`${message.type()}: ${message.text()}`));
    page.on("pageerror", (error) => log.pageErrors.push(String(error)));
    return { ...(await run(page)), ...log };
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

// Every request to another origin than `origins` is aborted and recorded.
async function blockOtherOrigins(page, origins) {
  const blocked = [];
  await page.setRequestInterception(true);
  page.on("request", (request) => {
    const url = request.url();
    if (url.startsWith("data:") || origins.includes(new URL(url).origin)) {
      request.continue();
    } else {
      blocked.push(url);
      request.abort("blockedbyclient");
    }
  });
  return blocked;
}

// GraphiQL's editors are CodeMirror 5 instances, found by the section they sit in.
async function editorValue(page, label) {
  return page.evaluate((label) => {
    const editors = document.querySelectorAll(`[aria-label="${label}"] .CodeMirror`);
    const visible = [...editors].filter((e) => !e.parentElement.classList.contains("hidden"));
    return visible.length ? visible[0].CodeMirror.getValue() : null;
  }, label);
}

// Types `query` into the editor, runs it, and waits until the result window holds JSON
// satisfying `done` (a function source evaluated in the page on the parsed result).
async function runInGraphiQL(page, query, done) {
  await page.evaluate((query) => {
    document.querySelector('[aria-label="Query Editor"] .CodeMirror').CodeMirror.setValue(query);
  }, query);
  // GraphiQL parses the editor's text a moment after a change and runs the operation it
  // found then: wait until what it parsed is the new text.
  await page.waitForFunction(
    () => {
      const editor = document.querySelector('[aria-label="Query Editor"] .CodeMirror').CodeMirror;
      return editor.documentAST?.loc?.source?.body === editor.getValue();
    },
    { timeout: TIMEOUT_MS, polling: 50 },
  );
  await page.evaluate(() => {
    const result = document.querySelector('[aria-label="Result Window"] .CodeMirror');
    result.CodeMirror.setValue("");
  });
  await page.click(".graphiql-execute-button");
  const handle = await page.waitForFunction(
    (done) => {
      const text = document
        .querySelector('[aria-label="Result Window"] .CodeMirror')
        .CodeMirror.getValue();
      try {
        const parsed = JSON.parse(text);
        return new Function("result", `return (${done})(result)`)(parsed) ? text : false;
      } catch {
        return false;
      }
    },
    { timeout: TIMEOUT_MS, polling: 100 },
    done,
  );
  return JSON.parse(await handle.jsonValue());
}

async function graphiql(options) {
  return withBrowser(async (page) => {
    const origin = new URL(options.api).origin;
    const blocked = await blockOtherOrigins(page, [origin]);
    const result = { blocked };
    await page.goto(`${options.api}/graphql`, { waitUntil: "load" });
    try {
      await page.waitForSelector('[aria-label="Query Editor"] .CodeMirror', {
        timeout: TIMEOUT_MS,
      });
      result.rendered = true;
    } catch {
      result.rendered = false;
      result.bodyText = await page.evaluate(() => document.body.innerText.slice(0, 200));
      return result;
    }
    result.headers = await editorValue(page, "Headers");
    result.operations = [];
    for (const operation of options.operations) {
      const ran = "(r) => 'data' in r || 'errors' in r";
      result.operations.push(await runInGraphiQL(page, operation, ran));
    }
    if (options.screenshot) {
      await page.screenshot({ path: options.screenshot });
    }
    if (options.subscription) {
      const event = runInGraphiQL(page, options.subscription, "(r) => true");
      emit({ event: "subscribing" });
      try {
        result.subscription = await event;
      } catch (error) {
        result.subscription = { failed: String(error) };
        result.resultWindow = await editorValue(page, "Result Window");
      }
    }
    return result;
  });
}

// A page served from another origin: page.html and graphql-ws's browser build.
function servePage(host, port) {
  const files = {
    "/page.html": join(HERE, "page.html"),
  };
  const server = createServer((request, response) => {
    const path = new URL(request.url, "http://page").pathname;
    const file = path.startsWith("/graphql-ws/")
      ? join(HERE, "node_modules/graphql-ws/dist", path.slice("/graphql-ws/".length))
      : files[path];
    if (!file || file.includes("..")) {
      response.writeHead(404).end();
      return;
    }
    const type = extname(file) === ".html" ? "text/html" : "text/javascript";
    response.writeHead(200, { "content-type": `${type}; charset=utf-8` });
    response.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
}

async function origin(options) {
  const server = await servePage("127.0.0.1", options.pagePort);
  try {
    return await withBrowser(async (page) => {
      const pageOrigin = `http://127.0.0.1:${options.pagePort}`;
      await page.goto(`${pageOrigin}/page.html`, { waitUntil: "load" });
      await page.waitForFunction(() => window.crm !== undefined, { timeout: TIMEOUT_MS });
      const result = { pageOrigin };
      result.fetch = await page.evaluate(
        (api, token) => window.crm.query(api, token),
        options.api,
        options.token,
      );
      result.socket = await page.evaluate((api) => window.crm.openSocket(api), options.api);
      if (options.subscribe) {
        const event = page.evaluate(
          (api, token) => window.crm.subscribeOnce(api, token),
          options.api,
          options.token,
        );
        emit({ event: "subscribing" });
        const timeout = new Promise((resolve) =>
          setTimeout(() => resolve({ failed: `no event within ${TIMEOUT_MS} ms` }), TIMEOUT_MS),
        );
        result.subscription = await Promise.race([event, timeout]);
      }
      return result;
    });
  } finally {
    server.close();
  }
}

const scenarios = { graphiql, origin };
const [scenario, json] = process.argv.slice(2);
emit({ result: await scenarios[scenario](JSON.parse(json)) });
