// The real-browser test of the `tether serve` chat page (docs/demo-chat.md, "The page's DOM
// contract"): Debian's headless Chromium, driven by playwright-core, against the real binary
// on 127.0.0.1 (ann's page through `tether proxy`, so that her connection alone can be cut).
//
//   1. two pages (ann, bob) join lobby and chat; their WebSocket handshakes (seen through CDP)
//      negotiated permessage-deflate with no context takeover either way, and a message long
//      enough to be compressed arrives intact;
//   2. every error button shows the right notice (4000, 4000, 4001, 4002 with the connection
//      open; 1009 and no automatic reconnect, then #reconnect rejoins; 4005s then 1008);
//   3. the proxy resets ann's connection and refuses her attempts while bob says 20 messages;
//      once it lets her through, she reconnects by herself, rejoins lobby with `since` and
//      shows each of the 20 once, in order, with no missed-messages notice;
//   4. the server stops (SIGTERM: close 1001 notices, the pages go to reconnecting) and starts
//      again on the same port (a new epoch): the pages reconnect by themselves, rejoin lobby,
//      show the missed-messages notice (their positions are stale) and chat;
//   5. a second server with --tls-cert/--tls-key and a test CA that a second Chromium trusts
//      (in its NSS store): two pages chat over wss:// (needs openssl and certutil).
//
// Run it with scripts/browser-tests (which installs playwright-core and builds the binary),
// or by hand: `node tests/browser/chat.test.mjs` with playwright-core on NODE_PATH (or in
// tests/browser/node_modules). Environment:
//   TETHER_BIN            the tether binary (default: cargo's target dir + /debug/tether)
//   TETHER_ARTIFACTS_DIR  screenshots and logs (default: target/browser-artifacts)
//   TETHER_CHROMIUM       the browser (default: /usr/bin/chromium, Debian's `chromium`)

import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Artifacts, launchChromium, newGuardedContext, newRecorder, newTrackedPage } from './lib/browser.mjs';
import { TetherProxy, TetherServer, tetherBinary } from './lib/server.mjs';
import { makeTestCertificates } from './lib/tls.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ARTIFACTS = path.resolve(ROOT, process.env.TETHER_ARTIFACTS_DIR || 'target/browser-artifacts');
const SERVER_ARGS = ['--rate', '10', '--burst', '20'];

// Bounds on every wait (ms).
const QUICK = 5000; // a reply, a notice, a state change
const RECONNECT = 15000; // reconnecting by itself after the restart (backoff max 10 s)
const NO_RETRY_WINDOW = 2000; // watching that nothing reconnects after a terminal close
const DOWNTIME = 2000; // the server restart: from SIGTERM to the new start
const MISSED = 20; // messages bob says while ann's connection is cut
const WATCHDOG = 120000; // the whole file, whatever hangs

const watchdog = setTimeout(() => {
    console.error(`browser test: still running after ${WATCHDOG / 1000} s: giving up`);
    process.exit(1); // the exit hook kills the server; Playwright kills its browser
}, WATCHDOG);
watchdog.unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// What a page shows, for the assertions and for the messages when one fails.

/** The page as the contract sees it: state, status, name, rooms, notices and messages. */
async function snapshot(page) {
    try {
        return await page.evaluate(() => {
            const text = (selector) => document.querySelector(selector)?.innerText?.trim() ?? null;
            const items = (selector) =>
                [...document.querySelectorAll(selector)].map((li) => ({
                    class: li.className,
                    code: li.dataset.code,
                    room: li.dataset.room,
                    from: li.dataset.from,
                    text: li.textContent.trim(),
                }));
            return {
                state: document.body?.dataset.state ?? null,
                status: text('#status'),
                name: text('#name'),
                rooms: text('#rooms'),
                notices: items('#notices > li').slice(-8),
                messages: items('#messages > li').slice(-8),
                states: (window.__tetherStates || []).map((s) => s.state).slice(-12),
            };
        });
    } catch (error) {
        return { unavailable: error.message.split('\n')[0] };
    }
}

/** Waits (at most `timeout` ms) until `predicate(arg)` holds in the page, else fails saying
 * what the page showed. */
async function waitUntil(page, what, predicate, arg, timeout = QUICK) {
    try {
        const handle = await page.waitForFunction(predicate, arg, { timeout, polling: 50 });
        return await handle.jsonValue();
    } catch (error) {
        if (!/Timeout/i.test(error.message)) throw error;
        const shown = JSON.stringify(await snapshot(page), null, 1);
        throw new Error(`${page.label}: ${what}: not within ${timeout} ms; the page shows ${shown}`);
    }
}

function waitForState(page, state, timeout = QUICK) {
    return waitUntil(page, `body[data-state=${state}]`, (s) => document.body?.dataset.state === s, state, timeout);
}

async function state(page) {
    return page.evaluate(() => document.body?.dataset.state ?? null);
}

/** Waits for a `li.message` with these room, sender and text (`FROM: TEXT`). */
function waitForMessage(page, { room, from, text }, timeout = QUICK) {
    return waitUntil(
        page,
        `#messages li.message[data-room="${room}"][data-from="${from}"] with text "${from}: ${text}"`,
        ({ room, from, line }) =>
            [...document.querySelectorAll('#messages li.message')].some(
                (li) => li.dataset.room === room && li.dataset.from === from && li.textContent.trim() === line,
            ),
        { room, from, line: `${from}: ${text}` },
        timeout,
    );
}

/** Where the page's notices stand now: pass it to waitForNewNotices. */
function noticeMark(page) {
    return page.evaluate(() => window.__tetherNotices.length);
}

/** Waits until a notice matching `selector` has come since `mark`, and returns the texts
 * and classes of every notice that came since, in arrival order. */
async function waitForNewNotices(page, selector, mark, timeout = QUICK) {
    await waitUntil(
        page,
        `a new #notices ${selector}`,
        ({ selector, mark }) => window.__tetherNotices.slice(mark).some((li) => li.matches(selector)),
        { selector, mark },
        timeout,
    );
    return page.evaluate(
        ({ selector, mark }) =>
            window.__tetherNotices.slice(mark).map((li) => ({
                matches: li.matches(selector),
                kind: li.classList.contains('close') ? 'close' : li.classList.contains('error') ? 'error' : li.className,
                code: li.dataset.code,
                text: li.textContent.trim(),
            })),
        { selector, mark },
    );
}

/** The text of the first notice matching `selector` since `mark`. */
async function waitForNotice(page, selector, mark, timeout = QUICK) {
    const notices = await waitForNewNotices(page, selector, mark, timeout);
    return notices.find((n) => n.matches).text;
}

/** Polls the page's WebSocket record (at most `timeout` ms) for a received frame: on its
 * newest WebSocket past the first `after` frames, or with `since: N` on any WebSocket from
 * the N-th (0-based) on, waiting for it to exist. */
async function waitForFrame(page, what, predicate, { since, after = 0, timeout = QUICK } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
        const sockets = since === undefined ? page.sockets.slice(-1) : page.sockets.slice(since);
        if (sockets.some((ws) => ws.received.slice(since === undefined ? after : 0).some(predicate))) return;
        if (Date.now() >= deadline) {
            const last = sockets.length ? JSON.stringify(sockets.at(-1).received.slice(-6)) : 'no WebSocket';
            throw new Error(`${page.label}: ${what}: not received within ${timeout} ms; last frames: ${last}`);
        }
        await sleep(50);
    }
}

/** Waits (at most `timeout` ms) for the response to the handshake of the page's WebSocket to
 * `url` (the newest, if several), as recorded by newTrackedPage, and returns it. */
async function waitForHandshake(page, url, timeout = QUICK) {
    const deadline = Date.now() + timeout;
    for (;;) {
        const handshake = page.handshakes.filter((h) => h.url === url).at(-1);
        if (handshake?.status != null) return handshake;
        if (Date.now() >= deadline) {
            throw new Error(
                `${page.label}: no handshake response for ${url} within ${timeout} ms; ` +
                    `handshakes seen: ${JSON.stringify(page.handshakes)}`,
            );
        }
        await sleep(50);
    }
}

/** A Sec-WebSocket-Extensions value as `[{ name, params: { NAME: VALUE or true } }]`, in
 * order (CDP joins repeated header lines with "\n": they are read as a list too). */
function parseExtensions(value) {
    return value
        .split(/[,\n]/)
        .map((extension) => extension.split(';').map((part) => part.trim()))
        .filter(([name]) => name)
        .map(([name, ...params]) => ({
            name,
            params: Object.fromEntries(
                params.filter(Boolean).map((param) => {
                    const [key, ...rest] = param.split('=');
                    return [key.trim(), rest.length ? rest.join('=').trim().replace(/^"(.*)"$/, '$1') : true];
                }),
            ),
        }));
}

/** The rooms `#rooms` lists, as words. */
async function roomsListed(page) {
    const text = await page.evaluate(() => document.querySelector('#rooms')?.innerText ?? '');
    return text.split(/[^\w.-]+/).filter(Boolean);
}

/** The texts (`FROM: TEXT`) of the `li.message`s the page shows from `from` in `room`, in
 * order. */
function messagesShown(page, room, from) {
    return page.evaluate(
        ({ room, from }) =>
            [...document.querySelectorAll('#messages li.message')]
                .filter((li) => li.dataset.room === room && li.dataset.from === from)
                .map((li) => li.textContent.trim()),
        { room, from },
    );
}

/** The texts of the missed-messages notices (`li.notice.missed`) that came since `mark`. */
function missedNotices(page, mark) {
    return page.evaluate(
        (mark) => window.__tetherNotices.slice(mark).filter((li) => li.matches('li.notice.missed')).map((li) => li.textContent.trim()),
        mark,
    );
}

const MISSED_NOTICE = (room) => `Reconnected to ${room}: messages sent while you were away may be missing`;

// ---------------------------------------------------------------------------------------------
// What a person does on the page.

/** Every chat page opened, for the screenshots after a failure. */
const opened = [];

/** A page of its own (in its own browser context) at `/?name=NAME`, open, with its name. */
async function openChat(browser, recorder, base, name) {
    const page = await newTrackedPage(await newGuardedContext(browser, recorder), name);
    opened.push(page);
    await page.goto(`${base}/?name=${encodeURIComponent(name)}`, { timeout: QUICK });
    await waitForState(page, 'open');
    await waitUntil(page, `#name shows "${name}"`, (n) => document.querySelector('#name')?.textContent.trim() === n, name);
    return page;
}

async function join(page, room) {
    await page.fill('#room', room, { timeout: QUICK });
    await page.click('#join', { timeout: QUICK });
    await waitForFrame(page, `{"type":"joined","room":"${room}"}`, (f) => f.type === 'joined' && f.room === room);
    await waitUntil(
        page,
        `#rooms lists ${room}`,
        (r) => (document.querySelector('#rooms')?.innerText ?? '').split(/[^\w.-]+/).includes(r),
        room,
    );
}

async function say(page, text) {
    await page.fill('#text', text, { timeout: QUICK });
    await page.click('#send', { timeout: QUICK });
}

/** `from` says `text` in lobby and every page in `to` shows it. */
async function chat(from, text, to) {
    await say(from, text);
    for (const page of to) await waitForMessage(page, { room: 'lobby', from: from.label, text });
}

// ---------------------------------------------------------------------------------------------

describe('tether serve: the chat page in Chromium', () => {
    const artifacts = new Artifacts(ARTIFACTS);
    const server = new TetherServer({ bin: tetherBinary(ROOT), args: SERVER_ARGS, log: artifacts.path('server.log') });
    let proxy; // tether proxy in front of the server: ann's way in
    let browser;
    let recorder;
    let base;
    let annBase; // the same server through the proxy
    let ann;
    let bob;
    let failed = null; // the first step that failed: the later ones depend on it

    /** A step of the scenario: skipped once an earlier one failed; on failure, saves a
     * screenshot and the HTML of both pages. */
    function step(name, fn, timeout = 30000) {
        it(name, { timeout }, async (t) => {
            if (failed) {
                t.skip(`after the failure of "${failed}"`);
                return;
            }
            try {
                await fn(t);
            } catch (error) {
                failed = name;
                recorder?.log(`[test] FAILED: ${name}: ${error.message}`);
                await artifacts.failure(opened, name);
                throw error;
            }
        });
    }

    before(async () => {
        artifacts.prepare();
        browser = await launchChromium();
        recorder = newRecorder(artifacts.path('pages.log'));
    });

    after(async () => {
        clearTimeout(watchdog);
        // Bounded, and the server goes whatever happens to the browser.
        let timer;
        const closing = Promise.resolve(browser?.close()).catch(() => {});
        await Promise.race([closing, new Promise((resolve) => (timer = setTimeout(resolve, 10000)))]);
        clearTimeout(timer);
        proxy?.kill();
        await server.kill().catch(() => {});
        console.log(`artefacts: ${artifacts.dir} (${artifacts.files.length} screenshots, server.log, pages.log)`);
    });

    step("Debian's Chromium renders a page from 127.0.0.1", async () => {
        const page = await newTrackedPage(await newGuardedContext(browser, recorder), 'smoke');
        const smoke = http.createServer((request, response) => {
            response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
            response.end('<!doctype html><title>smoke</title><body data-state="open"><h1 id="name">smoke</h1></body>');
        });
        await new Promise((resolve) => smoke.listen(0, '127.0.0.1', resolve));
        try {
            await page.goto(`http://127.0.0.1:${smoke.address().port}/`, { timeout: QUICK });
            await waitForState(page, 'open');
            assert.equal(await page.textContent('#name'), 'smoke');
            await artifacts.screenshot(page, 'chromium-smoke');
        } finally {
            await page.context().close();
            smoke.close();
        }
    });

    step('tether serve starts on 127.0.0.1', async () => {
        const addr = await server.start('127.0.0.1:0');
        assert.match(addr, /^127\.0\.0\.1:\d+$/);
        base = `http://${addr}`;
    });

    step('tether proxy starts in front of it', async () => {
        proxy = new TetherProxy({ bin: tetherBinary(ROOT), upstream: server.addr, log: artifacts.path('proxy.log') });
        const addr = await proxy.start();
        assert.match(addr, /^127\.0\.0\.1:\d+$/);
        assert.deepEqual((await proxy.clear()).down, false, 'the proxy is up, with no fault');
        annBase = `http://${addr}`;
    });

    step('two pages join lobby and chat', async () => {
        // ann through the proxy: the page and its WebSocket (same origin) both go through it.
        [ann, bob] = [await openChat(browser, recorder, annBase, 'ann'), await openChat(browser, recorder, base, 'bob')];
        for (const page of [ann, bob]) {
            assert.equal(page.sockets.length, 1, `${page.label}: one WebSocket`);
            assert.equal(new URL(page.sockets[0].url).pathname, '/ws', `${page.label}: the WebSocket is /ws`);
        }
        assert.equal(new URL(ann.sockets[0].url).host, proxy.addr, "ann's WebSocket goes through the proxy");
        assert.equal(new URL(bob.sockets[0].url).host, server.addr, "bob's WebSocket goes to the server");
        assert.ok((await proxy.stats()).connections_accepted >= 2, 'the proxy carried the page and its WebSocket');
        await join(ann, 'lobby');
        await join(bob, 'lobby');
        await chat(ann, 'hello', [ann, bob]);
        await chat(bob, 'hi ann', [bob, ann]);
        await artifacts.screenshot(ann, 'chatting-ann');
        await artifacts.screenshot(bob, 'chatting-bob');
    });

    step('permessage-deflate: the 101 names it with no context takeover both ways; long messages arrive intact', async (t) => {
        for (const page of [ann, bob]) {
            const socket = page.sockets.at(-1);
            const handshake = await waitForHandshake(page, socket.url);
            assert.equal(handshake.status, 101, `${page.label}: the handshake's status`);
            const offer = handshake.requestHeaders?.['sec-websocket-extensions'];
            assert.match(offer ?? '', /(^|,)\s*permessage-deflate\b/, `${page.label}: Chromium offered permessage-deflate (offer: ${offer})`);
            const answer = handshake.headers['sec-websocket-extensions'];
            assert.ok(
                answer !== undefined,
                `${page.label}: the 101 has no Sec-WebSocket-Extensions (offer: ${offer}; response headers: ${JSON.stringify(handshake.headers)})`,
            );
            t.diagnostic(`${page.label}: offered ${JSON.stringify(offer)}, the 101 answered ${JSON.stringify(answer)}`);
            recorder.log(`[test] ${page.label}: Sec-WebSocket-Extensions offered ${JSON.stringify(offer)}, answered ${JSON.stringify(answer)}`);
            const extensions = parseExtensions(answer);
            assert.deepEqual(extensions.map((e) => e.name), ['permessage-deflate'], `${page.label}: the extensions in "${answer}"`);
            const { params } = extensions[0];
            assert.equal(params.server_no_context_takeover, true, `${page.label}: server_no_context_takeover in "${answer}"`);
            assert.equal(params.client_no_context_takeover, true, `${page.label}: client_no_context_takeover in "${answer}"`);
        }
        // Well over the 64-byte threshold both ways (the say request and the broadcast), with
        // text that is not ASCII, so that inflating and the UTF-8 check afterwards both count.
        const stamp = Date.now().toString(36);
        const fromAnn = `deflated ${stamp}: ${'the quick brown fox jumps over the lazy dog; '.repeat(6)}ünïcødé ✓ — ann`;
        const fromBob = `inflated ${stamp}: ${'pack my box with five dozen liquor jugs, '.repeat(8)}ça va ✓ — bob`;
        for (const [from, text, to] of [[ann, fromAnn, bob], [bob, fromBob, ann]]) {
            assert.ok(Buffer.byteLength(text) > 256, 'the message is long enough to be compressed');
            const frames = to.sockets.at(-1).received.length;
            await chat(from, text, [from, to]);
            await waitForFrame(
                to,
                `the ${Buffer.byteLength(text)}-byte message from ${from.label}, intact`,
                (f) => f.type === 'message' && f.room === 'lobby' && f.from === from.label && f.text === text,
                { after: frames },
            );
        }
        await artifacts.screenshot(bob, 'deflate-bob');
    });

    for (const [button, code] of [
        ['#err-malformed', 4000],
        ['#err-unknown-type', 4000],
        ['#err-missing-room', 4001],
        ['#err-not-joined', 4002],
    ]) {
        step(`${button}: a ${code} error notice, the connection stays open`, async () => {
            const selector = `li.notice.error[data-code="${code}"]`;
            const mark = await noticeMark(bob);
            const frames = bob.sockets.at(-1).received.length;
            const sockets = bob.sockets.length;
            await bob.click(button, { timeout: QUICK });
            await waitForFrame(bob, `an error frame with code ${code}`, (f) => f.type === 'error' && f.data?.code === code, { after: frames });
            const text = await waitForNotice(bob, selector, mark);
            assert.match(text, new RegExp(`^${code}: \\S`), `the notice's text is "${code}: MESSAGE"`);
            await sleep(200); // a close would follow the error at once
            assert.equal(await state(bob), 'open', 'the connection stays open');
            assert.equal(bob.sockets.length, sockets, 'no new WebSocket');
            assert.equal(bob.sockets.at(-1).closed, null, 'the WebSocket is not closed');
            await artifacts.screenshot(bob, `err-${button.slice(5)}-${code}`);
        });
    }

    step('#err-oversized: close 1009, no automatic reconnect; #reconnect rejoins lobby', async () => {
        const mark = await noticeMark(bob);
        const sockets = bob.sockets.length;
        await bob.click('#err-oversized', { timeout: QUICK });
        const text = await waitForNotice(bob, 'li.notice.close[data-code="1009"]', mark);
        assert.match(text, /^closed: 1009 message too big: /, 'the notice reads "closed: 1009 message too big: REASON"');
        await waitForState(bob, 'closed');
        await sleep(NO_RETRY_WINDOW);
        assert.equal(await state(bob), 'closed', 'still closed: no automatic reconnect after 1009');
        assert.equal(bob.sockets.length, sockets, 'no new WebSocket after 1009');
        await artifacts.screenshot(bob, 'err-oversized-1009');

        await bob.click('#reconnect', { timeout: QUICK });
        await waitForState(bob, 'open');
        await waitForFrame(bob, 'lobby joined again', (f) => f.type === 'joined' && f.room === 'lobby', { since: sockets });
        assert.equal(bob.sockets.length, sockets + 1, 'one new WebSocket');
        assert.ok((await roomsListed(bob)).includes('lobby'), '#rooms still lists lobby');
        await chat(ann, 'still there, bob?', [bob]);
        await chat(bob, 'yes', [ann]);
        await artifacts.screenshot(bob, 'reconnected-after-1009');
    });

    step('#err-flood: 4005 notices, then close 1008; #reconnect rejoins lobby', async () => {
        const mark = await noticeMark(bob);
        const sockets = bob.sockets.length;
        await bob.click('#err-flood', { timeout: QUICK });
        const notices = await waitForNewNotices(bob, 'li.notice.close[data-code="1008"]', mark, 10000);
        const close = notices.findIndex((n) => n.matches);
        assert.match(notices[close].text, /^closed: 1008 policy violation: /, 'the notice reads "closed: 1008 policy violation: REASON"');
        const limited = notices.slice(0, close).filter((n) => n.kind === 'error' && n.code === '4005');
        assert.ok(limited.length >= 2, `several 4005 notices before the close (${limited.length}; since the click: ${notices.map((n) => `${n.kind}-${n.code}`).join(' ')})`);
        for (const n of limited) assert.match(n.text, /^4005: \S/, 'a 4005 notice reads "4005: MESSAGE"');
        assert.ok(
            notices.slice(close + 1).every((n) => n.code !== '4005'),
            'no 4005 notice after the close',
        );
        await waitForState(bob, 'closed');
        await sleep(NO_RETRY_WINDOW);
        assert.equal(await state(bob), 'closed', 'still closed: no automatic reconnect after 1008');
        assert.equal(bob.sockets.length, sockets, 'no new WebSocket after 1008');
        await artifacts.screenshot(bob, 'err-flood-4005-1008');

        await bob.click('#reconnect', { timeout: QUICK });
        await waitForState(bob, 'open');
        await waitForFrame(bob, 'lobby joined again', (f) => f.type === 'joined' && f.room === 'lobby', { since: sockets });
        assert.equal(bob.sockets.length, sockets + 1, 'one new WebSocket');
        await chat(ann, 'and now?', [bob]);
        await chat(bob, 'back again', [ann]);
        await artifacts.screenshot(bob, 'reconnected-after-1008');
    });

    step(`ann's connection is reset while bob says ${MISSED} messages: she reconnects by herself and shows each once, in order, with no missed-messages notice`, async () => {
        const stamp = Date.now().toString(36);
        const texts = Array.from({ length: MISSED }, (_, i) => `missed ${i + 1} of ${MISSED} (${stamp})`);
        const mark = await noticeMark(ann);
        const sockets = ann.sockets.length;
        const resetsBefore = (await proxy.stats()).resets;
        const cut = Date.now();

        // A reset (RST both ways) of the open connections at once, then down: her attempts
        // are refused until it comes back (one made in between is reset at once too). Down
        // only once the reset is done: a connection that sees `down` first is closed (FIN).
        await proxy.faults({ reset_after_ms: 0 });
        for (const deadline = Date.now() + QUICK; (await proxy.stats()).resets === resetsBefore; await sleep(20)) {
            if (Date.now() >= deadline) throw new Error(`the proxy reset no connection within ${QUICK} ms`);
        }
        await proxy.faults({ down: true });
        const text = await waitForNotice(ann, 'li.notice.close[data-code="1006"]', mark);
        assert.equal(text, 'closed: 1006 abnormal closure:', "ann's notice: no close frame, no reason");
        await waitUntil(
            ann,
            'body[data-state=reconnecting] since the cut',
            (since) => (window.__tetherStates || []).some((s) => s.state === 'reconnecting' && s.at >= since),
            cut - 50,
        );
        assert.equal(await state(bob), 'open', 'bob is not affected');

        for (const line of texts) await chat(bob, line, [bob]);
        assert.notEqual(await state(ann), 'open', 'ann is still cut off');
        const meanwhile = ann.sockets.slice(sockets).reduce((n, ws) => n + ws.received.length, 0);
        assert.equal(meanwhile, 0, 'ann received nothing while cut off');
        await artifacts.screenshot(ann, 'cut-off-ann');

        const up = Date.now();
        await proxy.clear();
        await waitForState(ann, 'open', RECONNECT);
        await waitForFrame(ann, 'lobby joined again', (f) => f.type === 'joined' && f.room === 'lobby', {
            since: sockets,
            timeout: Math.max(QUICK, RECONNECT - (Date.now() - up)),
        });
        const socket = ann.sockets.at(-1);
        const rejoin = socket.sent.find((f) => f.type === 'join' && f.room === 'lobby');
        assert.ok(
            rejoin && typeof rejoin.since?.epoch === 'string' && Number.isInteger(rejoin.since?.offset),
            `ann rejoined lobby with since: ${JSON.stringify(rejoin)}`,
        );
        const joined = socket.received.find((f) => f.type === 'joined' && f.room === 'lobby');
        assert.equal(joined.recovered, true, `the joined reply: ${JSON.stringify(joined)}`);
        assert.equal(joined.offset, rejoin.since.offset + MISSED, `${MISSED} messages to recover`);
        recorder.log(`[test] ann open and in lobby ${Date.now() - up} ms after the proxy came back (WebSockets since the cut: ${ann.sockets.length - sockets})`);

        // The missed ones come as replayed frames right after the joined reply; a live one after.
        await waitForMessage(ann, { room: 'lobby', from: 'bob', text: texts.at(-1) });
        await chat(bob, `live again (${stamp})`, [bob, ann]);
        const after = socket.received.slice(socket.received.indexOf(joined) + 1).filter((f) => f.type === 'message');
        assert.deepEqual(
            after.slice(0, MISSED).map((f) => [f.offset, f.text]),
            texts.map((t, i) => [rejoin.since.offset + i + 1, t]),
            'the replayed messages, in order, with their offsets',
        );
        const shown = (await messagesShown(ann, 'lobby', 'bob')).filter((line) => line.includes(stamp));
        assert.deepEqual(
            shown,
            [...texts, `live again (${stamp})`].map((t) => `bob: ${t}`),
            "ann shows each of bob's messages once, in order",
        );
        assert.deepEqual(await missedNotices(ann, mark), [], 'no missed-messages notice');
        await artifacts.screenshot(ann, 'recovered-ann');
    }, 45000);

    step('server restart on the same port: 1001 notices, the pages reconnect by themselves, rejoin lobby, show the missed-messages notice, chat', async () => {
        const pages = [ann, bob];
        const port = server.port;
        const marks = await Promise.all(pages.map(noticeMark));
        const sockets = pages.map((page) => page.sockets.length);
        const stopped = Date.now();

        const exit = await server.stop('SIGTERM', { timeoutMs: 10000 });
        assert.ok(exit.graceful, `tether serve exits by itself on SIGTERM (${JSON.stringify(exit)})`);
        for (const [i, page] of pages.entries()) {
            const text = await waitForNotice(page, 'li.notice.close[data-code="1001"]', marks[i]);
            assert.equal(text, 'closed: 1001 going away: server shutting down', `${page.label}: the 1001 notice`);
            await waitUntil(
                page,
                'body[data-state=reconnecting] since the server stopped',
                (since) => (window.__tetherStates || []).some((s) => s.state === 'reconnecting' && s.at >= since),
                stopped - 50,
            );
        }
        await artifacts.screenshot(ann, 'server-stopped-ann');

        // Down for a while, as a real restart is: the pages' attempts fail (1006) meanwhile,
        // and failing attempts must not stop the retries.
        await sleep(DOWNTIME - (Date.now() - stopped));
        for (const page of pages) {
            assert.notEqual(await state(page), 'closed', `${page.label}: still trying while the server is down`);
        }
        const restarted = Date.now();
        assert.equal(await server.start(`127.0.0.1:${port}`, { retryForMs: 5000 }), `127.0.0.1:${port}`);
        for (const [i, page] of pages.entries()) {
            await waitForState(page, 'open', Math.max(1, RECONNECT - (Date.now() - restarted)));
            await waitForFrame(page, 'lobby joined again', (f) => f.type === 'joined' && f.room === 'lobby', {
                since: sockets[i],
                timeout: Math.max(QUICK, RECONNECT - (Date.now() - restarted)),
            });
            // A new process, a new epoch: the position the page kept cannot be recovered.
            const joined = page.sockets.at(-1).received.find((f) => f.type === 'joined' && f.room === 'lobby');
            assert.equal(joined.recovered, false, `${page.label}: the joined reply: ${JSON.stringify(joined)}`);
            const missed = await waitForNotice(page, 'li.notice.missed[data-room="lobby"]', marks[i]);
            assert.equal(missed, MISSED_NOTICE('lobby'), `${page.label}: the missed-messages notice`);
            assert.equal((await missedNotices(page, marks[i])).length, 1, `${page.label}: one missed-messages notice`);
        }
        const attempts = pages.map((page, i) => `${page.label} ${page.sockets.length - sockets[i]}`).join(', ');
        recorder.log(`[test] both pages open and in lobby ${Date.now() - restarted} ms after the restart (WebSockets since the stop: ${attempts})`);
        await chat(ann, 'back', [ann, bob]);
        await chat(bob, 'welcome back', [bob, ann]);
        for (const page of pages) {
            assert.deepEqual(
                (await messagesShown(page, 'lobby', 'bob')).filter((line) => line === 'bob: welcome back'),
                ['bob: welcome back'],
                `${page.label}: the first message of the new epoch, once`,
            );
        }
        await artifacts.screenshot(ann, 'after-restart-ann');
        await artifacts.screenshot(bob, 'after-restart-bob');
    }, 45000);

    step('over wss://, two pages chat through a server whose CA Chromium trusts', async () => {
        const tls = makeTestCertificates(mkdtempSync(path.join(os.tmpdir(), 'tether-browser-tls-')));
        const secure = new TetherServer({
            bin: tetherBinary(ROOT),
            args: [...SERVER_ARGS, '--tls-cert', tls.cert, '--tls-key', tls.key],
            log: artifacts.path('server-tls.log'),
        });
        // A second Chromium, whose certificate store (its HOME's NSS database) has the CA:
        // the certificate is checked as a real one would be, no error is ignored.
        const trusting = await launchChromium({ home: tls.home });
        try {
            const addr = await secure.start('127.0.0.1:0');
            assert.equal(secure.scheme, 'https');
            const secureBase = `https://${addr}`;
            const carol = await openChat(trusting, recorder, secureBase, 'carol');
            const dave = await openChat(trusting, recorder, secureBase, 'dave');
            for (const page of [carol, dave]) {
                assert.equal(new URL(page.sockets[0].url).protocol, 'wss:', `${page.label}: a wss:// WebSocket`);
            }
            await join(carol, 'lobby');
            await join(dave, 'lobby');
            await chat(carol, 'hello over tls', [carol, dave]);
            await chat(dave, 'encrypted hi', [dave, carol]);
            await artifacts.screenshot(carol, 'wss-carol');
            assert.deepEqual([...carol.pageErrors, ...dave.pageErrors], [], 'uncaught errors over wss://');
        } finally {
            await Promise.resolve(trusting.close()).catch(() => {});
            await secure.kill().catch(() => {});
        }
    });

    step('no request left 127.0.0.1 and no page raised an error', async () => {
        assert.deepEqual(recorder.foreign, [], 'requests to anything but 127.0.0.1');
        assert.deepEqual(ann.pageErrors, [], 'uncaught errors in ann');
        assert.deepEqual(bob.pageErrors, [], 'uncaught errors in bob');
    });
});
