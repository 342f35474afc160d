// Runs the real `tether serve` binary for the browser test: start on 127.0.0.1 (port 0 the
// first time), read the `serving http(s)://ADDR/ ...` line from its stdout, stop it with a signal
// (SIGKILL if it has not exited in time), and start it again on the same address, retrying
// for a few seconds while the port is still busy. Also `tether proxy` in front of it, with its
// HTTP control API (faults, stats), to cut one page's connection. Whatever happens, no server
// or proxy outlives the test process: every child is killed on exit.

import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';

const live = new Set();
process.on('exit', () => {
    for (const child of live) {
        try {
            child.kill('SIGKILL');
        } catch {
            // Already gone.
        }
    }
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(signal, () => {
        console.error(`browser test: ${signal}: killing the server and exiting`);
        process.exit(130);
    });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `TETHER_BIN`, else `tether` in cargo's debug target directory of the workspace at `root`. */
export function tetherBinary(root) {
    if (process.env.TETHER_BIN) return process.env.TETHER_BIN;
    const metadata = JSON.parse(
        execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], {
            cwd: root,
            encoding: 'utf8',
            maxBuffer: 64 << 20,
        }),
    );
    return path.join(metadata.target_directory, 'debug', 'tether');
}

/** Errors that mean "the address is still taken": worth another try for a few seconds. */
const ADDRESS_BUSY = /address (already )?in use|AddrInUse|os error 98|EADDRINUSE/i;

export class TetherServer {
    /**
     * @param {object} options
     * @param {string} options.bin the tether binary
     * @param {string[]} options.args arguments after `serve --listen ADDR`
     * @param {string} [options.log] a file that gets the server's stdout and stderr
     */
    constructor({ bin, args = [], log }) {
        this.bin = bin;
        this.args = args;
        this.log = log;
        this.child = null;
        this.exited = null; // a promise of { code, signal } for the current child
        this.addr = null; // "127.0.0.1:PORT" once serving
        this.scheme = null; // "http", or "https" with --tls-cert
        this.starts = 0;
    }

    #log(line) {
        if (this.log) appendFileSync(this.log, `${line}\n`);
    }

    /**
     * Starts `tether serve --listen LISTEN ARGS...` and resolves with the address it serves
     * on. While the address is busy (a restart on the same port), tries again every 200 ms
     * for `retryForMs`.
     */
    async start(listen = '127.0.0.1:0', { retryForMs = 5000, readyTimeoutMs = 15000 } = {}) {
        if (this.child) throw new Error('the server is already running');
        const deadline = Date.now() + retryForMs;
        for (let attempt = 1; ; attempt++) {
            try {
                return await this.#startOnce(listen, readyTimeoutMs);
            } catch (error) {
                if (!error.addressBusy || Date.now() >= deadline) throw error;
                this.#log(`# attempt ${attempt}: ${listen} is busy, trying again`);
                await sleep(200);
            }
        }
    }

    #startOnce(listen, readyTimeoutMs) {
        const run = ++this.starts;
        const args = ['serve', '--listen', listen, ...this.args];
        this.#log(`# run ${run}: ${this.bin} ${args.join(' ')}`);
        const child = spawn(this.bin, args, {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, TETHER_LOG: process.env.TETHER_LOG || 'info', NO_COLOR: '1' },
        });
        live.add(child);
        this.child = child;
        const stderrTail = [];
        const exited = new Promise((resolve) => {
            child.once('exit', (code, signal) => {
                live.delete(child);
                this.#log(`# run ${run}: exited (code ${code}, signal ${signal})`);
                resolve({ code, signal });
            });
        });
        this.exited = exited;
        readline.createInterface({ input: child.stderr }).on('line', (line) => {
            this.#log(`[${run} stderr] ${line}`);
            stderrTail.push(line);
            if (stderrTail.length > 20) stderrTail.shift();
        });
        const stdout = readline.createInterface({ input: child.stdout });

        return new Promise((resolve, reject) => {
            let settled = false;
            const fail = (message, extra = {}) => {
                if (settled) return;
                settled = true;
                clearTimeout(timer);
                const tail = stderrTail.join('\n');
                const error = new Error(`${message}${tail ? `\nits stderr ends with:\n${tail}` : ''}`);
                error.addressBusy = ADDRESS_BUSY.test(tail);
                Object.assign(error, extra);
                reject(error);
            };
            const timer = setTimeout(() => {
                child.kill('SIGKILL');
                fail(`tether serve printed no "serving http(s)://..." line within ${readyTimeoutMs} ms`);
            }, readyTimeoutMs);
            child.once('error', (error) => fail(`cannot run ${this.bin}: ${error.message}`));
            exited.then(({ code, signal }) => {
                // Let the last stderr lines arrive before saying why it stopped.
                setTimeout(() => {
                    if (this.child === child) this.child = null;
                    fail(`tether serve exited before serving (code ${code}, signal ${signal})`);
                }, 100);
            });
            stdout.on('line', (line) => {
                this.#log(`[${run} stdout] ${line}`);
                const match = /^serving (https?):\/\/(\S+?)\/ /.exec(line);
                if (match && !settled) {
                    settled = true;
                    clearTimeout(timer);
                    this.scheme = match[1];
                    this.addr = match[2];
                    resolve(this.addr);
                }
            });
        });
    }

    /** The port it serves on. */
    get port() {
        return Number(new URL(`http://${this.addr}/`).port);
    }

    /**
     * Sends `signal` and waits for the exit; SIGKILL after `timeoutMs`. Resolves with
     * `{ code, signal, graceful }` (`graceful`: it exited by itself after `signal`).
     */
    async stop(signal = 'SIGTERM', { timeoutMs = 5000 } = {}) {
        const child = this.child;
        if (!child) return null;
        this.child = null;
        if (child.exitCode !== null || child.signalCode !== null) {
            return { code: child.exitCode, signal: child.signalCode, graceful: true };
        }
        child.kill(signal);
        let timer;
        const timedOut = new Promise((resolve) => {
            timer = setTimeout(() => resolve(null), timeoutMs);
        });
        const result = await Promise.race([this.exited, timedOut]);
        clearTimeout(timer);
        if (result) return { ...result, graceful: true };
        this.#log(`# it did not exit within ${timeoutMs} ms of ${signal}: SIGKILL`);
        child.kill('SIGKILL');
        return { ...(await this.exited), graceful: false };
    }

    /** SIGKILL now, whatever state it is in (the last resort of the test's cleanup). */
    async kill() {
        return this.stop('SIGKILL', { timeoutMs: 2000 });
    }
}

/**
 * `tether proxy --listen 127.0.0.1:0 --upstream UPSTREAM --control 127.0.0.1:0`: a TCP proxy
 * whose faults the test sets through its control API (README.md, "Testing against bad
 * networks"; the JSON shape is `tether::testing::Faults`).
 */
export class TetherProxy {
    /**
     * @param {object} options
     * @param {string} options.bin the tether binary
     * @param {string} options.upstream "127.0.0.1:PORT" of the server
     * @param {string} [options.log] a file that gets the proxy's stdout and stderr
     */
    constructor({ bin, upstream, log }) {
        this.bin = bin;
        this.upstream = upstream;
        this.log = log;
        this.child = null;
        this.addr = null; // "127.0.0.1:PORT": what clients connect to
        this.control = null; // "127.0.0.1:PORT": the control API
    }

    #log(line) {
        if (this.log) appendFileSync(this.log, `${line}\n`);
    }

    /** Starts it and resolves with the address it proxies from, once it says so. */
    start({ readyTimeoutMs = 15000 } = {}) {
        if (this.child) throw new Error('the proxy is already running');
        const args = ['proxy', '--listen', '127.0.0.1:0', '--upstream', this.upstream, '--control', '127.0.0.1:0'];
        this.#log(`# ${this.bin} ${args.join(' ')}`);
        const child = spawn(this.bin, args, {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, TETHER_LOG: process.env.TETHER_LOG || 'info', NO_COLOR: '1' },
        });
        live.add(child);
        this.child = child;
        child.once('exit', (code, signal) => {
            live.delete(child);
            if (this.child === child) this.child = null;
            this.#log(`# exited (code ${code}, signal ${signal})`);
        });
        readline.createInterface({ input: child.stderr }).on('line', (line) => this.#log(`[stderr] ${line}`));
        const stdout = readline.createInterface({ input: child.stdout });
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                child.kill('SIGKILL');
                reject(new Error(`tether proxy printed no "proxying ..." line within ${readyTimeoutMs} ms`));
            }, readyTimeoutMs);
            child.once('error', (error) => {
                clearTimeout(timer);
                reject(new Error(`cannot run ${this.bin}: ${error.message}`));
            });
            child.once('exit', (code, signal) => {
                clearTimeout(timer);
                reject(new Error(`tether proxy exited before proxying (code ${code}, signal ${signal})`));
            });
            stdout.on('line', (line) => {
                this.#log(`[stdout] ${line}`);
                const match = /^proxying (\S+) to \S+, control API on http:\/\/(\S+)$/.exec(line);
                if (match) {
                    clearTimeout(timer);
                    this.addr = match[1];
                    this.control = match[2];
                    resolve(this.addr);
                }
            });
        });
    }

    /** One control API request; resolves with the JSON answer, rejects on anything but 200. */
    request(method, route, body) {
        const payload = body === undefined ? '' : JSON.stringify(body);
        const [host, port] = this.control.split(':');
        return new Promise((resolve, reject) => {
            const request = http.request(
                {
                    host,
                    port: Number(port),
                    method,
                    path: route,
                    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
                    timeout: 5000,
                },
                (response) => {
                    let text = '';
                    response.setEncoding('utf8');
                    response.on('data', (chunk) => (text += chunk));
                    response.on('end', () => {
                        this.#log(`# ${method} ${route} ${payload} -> ${response.statusCode} ${text}`);
                        if (response.statusCode === 200) resolve(JSON.parse(text));
                        else reject(new Error(`${method} ${route}: ${response.statusCode} ${text}`));
                    });
                },
            );
            request.on('timeout', () => request.destroy(new Error(`${method} ${route}: no answer within 5 s`)));
            request.on('error', reject);
            request.end(payload);
        });
    }

    /** PUT /faults: these faults (a missing field is no fault) for the open connections and
     * the next ones, applied when it resolves. */
    faults(faults) {
        return this.request('PUT', '/faults', faults);
    }

    /** POST /reset: no fault any more (up again, if it was down). */
    clear() {
        return this.request('POST', '/reset');
    }

    /** GET /stats: connections, bytes and resets so far. */
    stats() {
        return this.request('GET', '/stats');
    }

    /** SIGKILL now. */
    kill() {
        const child = this.child;
        this.child = null;
        if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
}
