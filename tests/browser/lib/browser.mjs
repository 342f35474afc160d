// Debian's headless Chromium driven by playwright-core (never a browser that Playwright
// downloads), with a guard that lets pages reach 127.0.0.1 only, a record of every page's
// WebSocket frames and state changes, and the test's artefacts (screenshots, logs).

import { appendFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

// playwright-core comes from NODE_PATH (scripts/browser-tests installs it into the cache) or
// from tests/browser/node_modules (`npm ci` there); createRequire honours NODE_PATH.
const require = createRequire(import.meta.url);
let playwright;
try {
    playwright = require('playwright-core');
} catch (error) {
    throw new Error(
        'playwright-core is not installed: run scripts/browser-tests, or ' +
            '`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser` first ' +
            `(${error.message.split('\n')[0]})`,
    );
}

export const CHROMIUM = process.env.TETHER_CHROMIUM || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    // No name resolves: whatever a page (or the browser) would fetch from elsewhere fails
    // at once; the test talks to the IP literal 127.0.0.1 only.
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

/** Launches Chromium; `home` gives it another HOME (and so another NSS certificate store). */
export async function launchChromium({ home } = {}) {
    return playwright.chromium.launch({
        executablePath: CHROMIUM,
        args: CHROMIUM_ARGS,
        headless: true,
        timeout: 30000,
        ...(home ? { env: { ...process.env, HOME: home } } : {}),
    });
}

/** What every context shares: the requests that tried to leave 127.0.0.1 (`foreign`; the
 * test fails on any) and `log(line)`, the pages' log (console, errors, WebSocket frames). */
export function newRecorder(logFile) {
    return {
        foreign: [],
        log(line) {
            if (logFile) appendFileSync(logFile, `${new Date().toISOString()} ${line}\n`);
        },
    };
}

/**
 * A browser context (a window of its own, so that no page is a throttled background tab)
 * whose pages may reach 127.0.0.1 only: every other request is aborted and kept in
 * `recorder.foreign`.
 */
export async function newGuardedContext(browser, recorder) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 760 } });
    context.foreign = recorder.foreign;
    context.log = recorder.log;
    await context.route('**/*', (route) => {
        const url = new URL(route.request().url());
        if (url.hostname === '127.0.0.1' || url.protocol === 'data:') return route.continue();
        context.foreign.push(url.href);
        return route.abort('blockedbyclient');
    });
    // Every transition of <body data-state>, with its time, for the assertions on
    // reconnecting, and every notice in the order it came (the contract's hooks are the
    // attribute and the list themselves).
    await context.addInitScript(() => {
        window.__tetherStates = [];
        const record = () => {
            const state = document.body && document.body.getAttribute('data-state');
            const states = window.__tetherStates;
            if (state && (states.length === 0 || states[states.length - 1].state !== state)) {
                states.push({ state, at: Date.now() });
            }
        };
        // Every <li> added to #notices, in arrival order (whichever end the list grows at).
        window.__tetherNotices = [];
        const notices = new MutationObserver((mutations) => {
            for (const mutation of mutations) {
                for (const node of mutation.addedNodes) {
                    if (node.nodeType === 1 && node.tagName === 'LI' && node.parentElement?.id === 'notices') {
                        window.__tetherNotices.push(node);
                    }
                }
            }
        });
        const observe = () => {
            record();
            new MutationObserver(record).observe(document.body, {
                attributes: true,
                attributeFilter: ['data-state'],
            });
            notices.observe(document.body, { childList: true, subtree: true });
        };
        if (document.body) observe();
        else document.addEventListener('DOMContentLoaded', observe);
    });
    return context;
}

/**
 * A page of `context` with a record of its WebSockets: `page.sockets` lists
 * `{ url, opened, sent: [...], received: [...], closed }` (frames parsed as JSON when they
 * are), newest last; `page.handshakes` lists their opening handshakes as the browser's
 * network stack saw them, `{ url, requestHeaders, status, headers }` (`headers`: the
 * response's, names lower-cased; `status` and `headers` are null until the response comes),
 * newest last. Playwright's WebSocket events do not show handshake headers: these come from
 * a CDP session of the page (Network.webSocketWillSendHandshakeRequest and
 * Network.webSocketHandshakeResponseReceived).
 */
export async function newTrackedPage(context, label) {
    const page = await context.newPage();
    page.label = label;
    page.sockets = [];
    page.handshakes = [];
    page.pageErrors = [];
    const lowerCased = (headers) =>
        Object.fromEntries(Object.entries(headers || {}).map(([name, value]) => [name.toLowerCase(), value]));
    const handshakes = new Map(); // CDP requestId -> the entry in page.handshakes
    const handshake = (requestId, url) => {
        let entry = handshakes.get(requestId);
        if (!entry) {
            entry = { url, requestHeaders: null, status: null, headers: null };
            handshakes.set(requestId, entry);
            page.handshakes.push(entry);
        }
        if (url && !entry.url) entry.url = url;
        return entry;
    };
    const cdp = await context.newCDPSession(page);
    cdp.on('Network.webSocketCreated', ({ requestId, url }) => handshake(requestId, url));
    cdp.on('Network.webSocketWillSendHandshakeRequest', ({ requestId, request }) => {
        handshake(requestId, null).requestHeaders = lowerCased(request.headers);
    });
    cdp.on('Network.webSocketHandshakeResponseReceived', ({ requestId, response }) => {
        const entry = handshake(requestId, null);
        entry.status = response.status;
        entry.headers = lowerCased(response.headers);
        const extensions = entry.headers['sec-websocket-extensions'];
        context.log(
            `[${label} handshake] ${response.status} ${entry.url} ` +
                `Sec-WebSocket-Extensions: ${extensions === undefined ? '(none)' : JSON.stringify(extensions)}`,
        );
    });
    await cdp.send('Network.enable');
    page.on('console', (message) => context.log(`[${label} console.${message.type()}] ${message.text()}`));
    page.on('pageerror', (error) => {
        page.pageErrors.push(error.message);
        context.log(`[${label} pageerror] ${error.message}`);
    });
    page.on('websocket', (ws) => {
        const socket = { url: ws.url(), opened: Date.now(), sent: [], received: [], closed: null };
        page.sockets.push(socket);
        const url = new URL(ws.url());
        if (url.hostname !== '127.0.0.1') context.foreign.push(ws.url());
        context.log(`[${label} ws#${page.sockets.length}] open ${ws.url()}`);
        const parse = (payload) => {
            if (typeof payload !== 'string') return { binary: payload.length };
            try {
                return JSON.parse(payload);
            } catch {
                return { unparsed: payload.length > 200 ? `${payload.slice(0, 200)}...` : payload };
            }
        };
        const brief = (payload) =>
            typeof payload === 'string' && payload.length > 300 ? `${payload.slice(0, 300)}... (${payload.length} chars)` : payload;
        ws.on('framesent', ({ payload }) => {
            socket.sent.push(parse(payload));
            context.log(`[${label} ws#${page.sockets.indexOf(socket) + 1} >] ${brief(payload)}`);
        });
        ws.on('framereceived', ({ payload }) => {
            socket.received.push(parse(payload));
            context.log(`[${label} ws#${page.sockets.indexOf(socket) + 1} <] ${brief(payload)}`);
        });
        ws.on('socketerror', (error) => context.log(`[${label} ws] error ${error}`));
        ws.on('close', () => {
            socket.closed = Date.now();
            context.log(`[${label} ws#${page.sockets.indexOf(socket) + 1}] closed`);
        });
    });
    return page;
}

/** The artefacts directory: screenshots one per step, the server's and the pages' logs. */
export class Artifacts {
    constructor(dir) {
        this.dir = dir;
        this.count = 0;
        this.files = [];
    }

    /** Creates the directory and removes what an earlier run of this test left there. */
    prepare() {
        mkdirSync(this.dir, { recursive: true });
        for (const name of readdirSync(this.dir)) {
            if (/^(\d\d-.*\.png|failed-.*\.(png|html)|server\.log|proxy\.log|pages\.log)$/.test(name)) {
                rmSync(path.join(this.dir, name));
            }
        }
        return this;
    }

    path(name) {
        return path.join(this.dir, name);
    }

    /** Saves a screenshot of `page` as `NN-name.png`. */
    async screenshot(page, name) {
        this.count += 1;
        const file = this.path(`${String(this.count).padStart(2, '0')}-${name}.png`);
        await page.screenshot({ path: file, fullPage: true, timeout: 10000 });
        this.files.push(file);
        return file;
    }

    /** After a failure: a screenshot and the HTML of each page, best effort. */
    async failure(pages, step) {
        const slug = step.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase().slice(0, 40);
        for (const page of pages) {
            if (!page || page.isClosed()) continue;
            try {
                await page.screenshot({ path: this.path(`failed-${slug}-${page.label}.png`), fullPage: true, timeout: 5000 });
                writeFileSync(this.path(`failed-${slug}-${page.label}.html`), await page.content());
            } catch {
                // The page may be gone; the logs still say what happened.
            }
        }
    }
}
