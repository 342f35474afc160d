// A test CA for the wss:// step, made with the openssl command: a CA and a leaf for
// 127.0.0.1 signed by it, and a Chromium profile home whose NSS database trusts the CA
// (certutil, Debian's libnss3-tools), so the browser checks the chain as it would a real one.

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

function run(command, args) {
    try {
        execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
    } catch (error) {
        if (error.code === 'ENOENT') {
            const pkg = command === 'certutil' ? 'libnss3-tools' : command;
            throw new Error(`the ${command} command is required (Debian: apt-get install ${pkg})`);
        }
        throw new Error(`${command} ${args.join(' ')} failed: ${error.stderr || error.message}`);
    }
}

/**
 * Makes the CA, the server certificate and key in `dir`, and `dir/home/.pki/nssdb` trusting
 * the CA. Returns `{ ca, cert, key, home }`: give `cert` and `key` to `tether serve` and
 * `home` as Chromium's HOME.
 */
export function makeTestCertificates(dir) {
    const file = (name) => path.join(dir, name);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    run('openssl', [
        'req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2',
        '-subj', '/CN=Tether browser test CA',
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    run('openssl', ['req', ...ec, '-keyout', file('key.pem'), '-out', file('leaf.csr'), '-subj', '/CN=127.0.0.1']);
    writeFileSync(
        file('leaf.ext'),
        'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
    );
    run('openssl', [
        'x509', '-req', '-in', file('leaf.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
        '-CAcreateserial', '-out', file('cert.pem'), '-days', '2', '-extfile', file('leaf.ext'),
    ]);
    const home = file('home');
    const nssdb = path.join(home, '.pki', 'nssdb');
    mkdirSync(nssdb, { recursive: true });
    run('certutil', ['-d', `sql:${nssdb}`, '-N', '--empty-password']);
    run('certutil', ['-d', `sql:${nssdb}`, '-A', '-t', 'C,,', '-n', 'tether-browser-test-ca', '-i', file('ca.pem')]);
    return { ca: file('ca.pem'), cert: file('cert.pem'), key: file('key.pem'), home };
}
