// The OTLP exporter environment (OTEL_EXPORTER_OTLP_[PROFILES_]*, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_SERVICE_NAME) as the OTLP exporter specification reads it, and container ids from the
// /proc/PID/cgroup lines Docker, containerd (Kubernetes), CRI-O and Podman write, cgroup v1 and v2;
// the agent's config file. What would fail on every request is refused at start, in a line that
// never shows a secret: endpoints that are not URLs or have no valid port, header values a header
// cannot carry, TLS files that are missing, not files, or not PEM.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAgentConfig } from '../src/agent-config.js';
import { UsageError } from '../src/cli-args.js';
import { idsFromCgroup } from '../src/container-id.js';
import { checkEndpoint, checkHeaders, checkTlsFiles, otlpFromEnv, resourceFromEnv, showUrl } from '../src/otel-env.js';
import { workDir } from './helpers.js';

const ID = '9f2f6a0e1b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6';

describe('OTEL environment', () => {
  it('defaults to gRPC on localhost:4317, HTTP on 4318', () => {
    assert.deepEqual(otlpFromEnv({}), { endpoint: 'http://localhost:4317', protocol: 'grpc' });
    assert.deepEqual(otlpFromEnv({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }), { endpoint: 'http://localhost:4318', protocol: 'http/protobuf' });
  });

  it('prefers the profiles variables; the signal endpoint is the full URL for HTTP', () => {
    const o = otlpFromEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://generic:4318',
      OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT: 'https://pyroscope:4040/v1development/profiles',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_HEADERS: 'a=1',
      OTEL_EXPORTER_OTLP_PROFILES_HEADERS: 'authorization=Basic%20dXNlcjpwYXNz,X-Scope-OrgID=t1',
      OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
      OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT: '2500',
      OTEL_EXPORTER_OTLP_CERTIFICATE: '/etc/ca.pem',
      OTEL_EXPORTER_OTLP_PROFILES_CLIENT_CERTIFICATE: '/etc/c.pem',
      OTEL_EXPORTER_OTLP_PROFILES_CLIENT_KEY: '/etc/k.pem',
      OTEL_EXPORTER_OTLP_INSECURE: 'TRUE',
    });
    assert.deepEqual(o, {
      endpoint: 'https://pyroscope:4040/v1development/profiles',
      url: 'https://pyroscope:4040/v1development/profiles',
      protocol: 'http/protobuf',
      headers: { authorization: 'Basic dXNlcjpwYXNz', 'X-Scope-OrgID': 't1' },
      compression: 'gzip',
      timeoutMs: 2500,
      certificate: '/etc/ca.pem',
      clientCertificate: '/etc/c.pem',
      clientKey: '/etc/k.pem',
      insecure: true,
    });
  });

  it('names the variable that is wrong', () => {
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL: 'http/json' }), (e: Error) => e instanceof UsageError && /OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL/.test(e.message));
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: '10s' }), /OTEL_EXPORTER_OTLP_TIMEOUT='10s'/);
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' }), /gzip or none/);
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_HEADERS: 'novalue' }), /not key=value/);
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: '99999999999' }), /at most 3600000/);
  });

  it('takes endpoints that are URLs with a port a socket can take (and host:port for gRPC), nothing else', () => {
    for (const [v, p] of [
      ['http://collector:4317', 'grpc'],
      ['https://collector', 'grpc'],
      ['collector:4317', 'grpc'],
      ['http://[::1]:4318/', 'http/protobuf'],
      ['https://pyroscope:4040/v1development/profiles', 'http/protobuf'],
      ['http://127.0.0.1:65535', 'grpc'],
    ] as const) {
      assert.doesNotThrow(() => checkEndpoint(v, p, 'X'), v);
    }
    for (const [v, p, want] of [
      ['not a url', 'grpc', /X='not a url': not a URL/],
      ['collector:4318', 'http/protobuf', /not an http:\/\/ or https:\/\/ URL/],
      ['ftp://collector:21', 'grpc', /not an http/],
      ['http://collector:70000', 'grpc', /port 70000 is not a port \(1 to 65535\)/],
      ['http://[::1]:70000/x', 'http/protobuf', /port 70000/],
      ['collector:0', 'grpc', /port 0 is not a port/],
      ['http://:4317', 'grpc', /X=/],
      ['http://user:hunter2@collector:4317', 'grpc', /X='http:\/\/…@collector:4317': has a user name or password/],
    ] as const) {
      assert.throws(() => checkEndpoint(v, p, 'X'), (e: Error) => e instanceof UsageError && want.test(e.message) && !e.message.includes('hunter2'), v);
    }
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:70000' }), /OTEL_EXPORTER_OTLP_ENDPOINT='http:\/\/collector:70000': port 70000/);
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT: 'pyroscope:4040' }), /OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT/);
    assert.equal(showUrl('https://u:p@h:1/v1?token=abc'), 'https://…@h:1/v1?…');
  });

  it('refuses a header value a header cannot carry, naming the header and never showing the value', () => {
    const secret = 'Bearer abc123def456';
    for (const [value, want] of [
      [`${secret}\n`, /a newline at the end/],
      [`\r${secret}`, /a carriage return at the start/],
      [`${secret.slice(0, 6)}\u0000${secret.slice(6)}`, /control character U\+0000 inside/],
      [`${secret}é`, /outside printable ASCII/],
    ] as const) {
      assert.throws(
        () => checkHeaders({ authorization: value }, 'OTEL_EXPORTER_OTLP_HEADERS'),
        (e: Error) => e instanceof UsageError && /OTEL_EXPORTER_OTLP_HEADERS: the value of header authorization/.test(e.message) && want.test(e.message) && !e.message.includes('abc123'),
      );
    }
    assert.throws(() => checkHeaders({ 'bad name': 'x' }, 'H'), /H: header 1 has a name a header cannot have/);
    assert.deepEqual(checkHeaders({ authorization: secret, 'X-Scope-OrgID': 't1' }, 'H'), { authorization: secret, 'X-Scope-OrgID': 't1' });
    // From the environment: URL-decoded first, then checked; a malformed entry is not quoted.
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc123def456%0A' }), (e: Error) => /newline at the end/.test(e.message) && !e.message.includes('abc123'));
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_HEADERS: 'a=1,Bearer abc123def456' }), (e: Error) => /entry 2 is not key=value/.test(e.message) && !e.message.includes('abc123'));
  });

  it('checks the TLS files at start: readable regular PEM files, a client certificate with its key', () => {
    const dir = workDir('otel-env');
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=t'], { stdio: 'pipe' });
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    const fifo = join(dir, 'fifo.pem');
    execFileSync('rm', ['-f', fifo]);
    execFileSync('mkfifo', [fifo]);
    const names = { certificate: 'CA', clientCertificate: 'CERT', clientKey: 'KEY' };
    assert.doesNotThrow(() => checkTlsFiles({ certificate: cert, clientCertificate: cert, clientKey: key }, names));
    for (const [files, want] of [
      [{ certificate: join(dir, 'missing.pem') }, /CA: cannot read .*missing\.pem \(ENOENT\)/],
      [{ certificate: dir }, /CA: .* is not a file/],
      [{ certificate: fifo }, /CA: .*fifo\.pem is not a file/],
      [{ certificate: junk }, /CA: .*junk\.pem is not a PEM certificate/],
      [{ certificate: key }, /is not a PEM certificate/],
      [{ clientCertificate: cert, clientKey: cert }, /KEY: .* is not a PEM private key/],
      [{ clientCertificate: cert }, /CERT is given without KEY/],
    ] as const) {
      assert.throws(() => checkTlsFiles(files, names), (e: Error) => e instanceof UsageError && want.test(e.message) && !e.message.includes('PRIVATE KEY-----\n'), JSON.stringify(files));
    }
    assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_CLIENT_KEY: key }, { checkFiles: true }), /OTEL_EXPORTER_OTLP_CLIENT_KEY is given without OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/);
    assert.doesNotThrow(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_CERTIFICATE: cert }, { checkFiles: true }));
  });

  it('refuses a timeout over an hour, which a timer would cut to 1 ms', () => {
    assert.equal(otlpFromEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: '3600000' }).timeoutMs, 3_600_000);
    for (const v of ['3600001', '2147483648', '9'.repeat(400)]) {
      assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: v }), (e: Error) => e instanceof UsageError && /^OTEL_EXPORTER_OTLP_TIMEOUT='\d+': at most 3600000 \(an hour\)$/.test(e.message));
    }
  });

  it('reads resource attributes, OTEL_SERVICE_NAME over service.name', () => {
    assert.deepEqual(resourceFromEnv({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=a,k8s.namespace.name=shop%20prod', OTEL_SERVICE_NAME: 'checkout' }), {
      'service.name': 'checkout',
      'k8s.namespace.name': 'shop prod',
    });
    assert.deepEqual(resourceFromEnv({}), {});
  });
});

describe('container id', () => {
  it('is found in every runtime layout, v1 and v2', () => {
    for (const text of [
      `0::/system.slice/docker-${ID}.scope\n`,
      `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-${ID}.scope\n`,
      `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podabc.slice/crio-${ID}.scope\n`,
      `0::/machine.slice/libpod-${ID}.scope/container\n`,
      `12:pids:/docker/${ID}\n11:memory:/docker/${ID}\n`,
      `4:memory:/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/${ID}\n`,
    ]) {
      assert.equal(idsFromCgroup(text).containerId, ID, text);
    }
  });

  it('is absent outside containers', () => {
    assert.equal(idsFromCgroup('0::/user.slice/user-0.slice/session-3.scope\n').containerId, undefined);
    assert.equal(idsFromCgroup('0::/\n').containerId, undefined);
    assert.equal(idsFromCgroup('').containerId, undefined);
  });
});

describe('agent config file', () => {
  it('reads several destinations, with secrets from the environment', () => {
    const cfg = parseAgentConfig(
      {
        exporters: [
          { type: 'otlp', endpoint: 'http://collector:4317', headers: { authorization: 'Bearer ${TOKEN}' }, compression: 'gzip', timeout: '2s', insecure: true },
          { type: 'otlp', protocol: 'http/protobuf', endpoint: 'http://pyroscope:4040' },
          { type: 'directory', path: '/var/lib/flamewire' },
        ],
      },
      'cfg.json',
      { TOKEN: 't0k' },
    );
    assert.deepEqual(cfg, {
      otlp: [
        { endpoint: 'http://collector:4317', protocol: 'grpc', headers: { authorization: 'Bearer t0k' }, compression: 'gzip', timeoutMs: 2000, insecure: true },
        { endpoint: 'http://pyroscope:4040', protocol: 'http/protobuf' },
      ],
      pyroscope: [],
      outputDirs: ['/var/lib/flamewire'],
    });
  });

  it('takes a backend preset for OTLP exporters: pyroscope, and parca over gRPC', () => {
    const cfg = parseAgentConfig(
      {
        exporters: [
          { type: 'otlp', preset: 'pyroscope', protocol: 'http/protobuf', endpoint: 'http://pyroscope:4040' },
          { type: 'otlp', preset: 'parca', endpoint: 'http://parca:7070' },
        ],
      },
      'cfg.json',
      {},
    );
    assert.deepEqual(cfg.otlp, [
      { endpoint: 'http://pyroscope:4040', protocol: 'http/protobuf', preset: 'pyroscope' },
      { endpoint: 'http://parca:7070', protocol: 'grpc', preset: 'parca' },
    ]);
  });

  it('names the exporter and the field that is wrong', () => {
    const bad = (json: unknown, want: RegExp) => assert.throws(() => parseAgentConfig(json, 'cfg.json', {}), (e: Error) => e instanceof UsageError && want.test(e.message));
    bad({}, /needs "exporters"/);
    bad({ exporters: [{ type: 'kafka' }] }, /exporters\[0\]\.type/);
    bad({ exporters: [{ type: 'otlp' }] }, /exporters\[0\]\.endpoint is missing/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'collector:4317' }] }, /must be a URL/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:1', protocol: 'udp' }] }, /protocol/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:1', headers: { a: '${NOPE}' } }] }, /NOPE, which is not set/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:1', retries: 3 }] }, /unknown field "retries"/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:1', preset: 'grafana' }] }, /exporters\[0\]\.preset must be "pyroscope" or "parca"/);
    bad({ exporters: [{ type: 'parca', endpoint: 'http://c:1', preset: 'parca' }] }, /exporters\[0\]\.preset is for exporters of type "otlp"/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:1', protocol: 'http/protobuf', preset: 'parca' }] }, /exporters\[0\]: Parca takes OTLP over gRPC only/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:70000' }] }, /config file cfg\.json: exporters\[0\]\.endpoint='http:\/\/c:70000': port 70000 is not a port/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:1', protocol: 'http/protobuf', url: 'c:1/v1' }] }, /exporters\[0\]\.url=/);
    bad({ exporters: [{ type: 'pyroscope', endpoint: 'http://c:99999' }] }, /exporters\[0\]\.endpoint=.*port 99999/);
    bad({ exporters: [{ type: 'otlp', endpoint: 'http://c:1', timeout: '2h' }] }, /exporters\[0\]\.timeout must be at most 1h/);
  });

  it('refuses secrets that cannot be sent (a trailing newline from a Secret made with echo), never showing them', () => {
    const env = { TOKEN: 'tok-abc123def456\n' };
    const bad = (exporter: unknown, want: RegExp) =>
      assert.throws(() => parseAgentConfig({ exporters: [exporter] }, 'cfg.json', env), (e: Error) => e instanceof UsageError && want.test(e.message) && !e.message.includes('abc123'));
    bad({ type: 'otlp', endpoint: 'http://c:1', headers: { authorization: 'Bearer ${TOKEN}' } }, /exporters\[0\]\.headers: the value of header authorization has a character a header cannot carry \(a newline at the end\)/);
    bad({ type: 'pyroscope', endpoint: 'http://c:1', bearerToken: '${TOKEN}' }, /exporters\[0\]\.bearerToken has a character it cannot have \(a newline at the end\)/);
    bad({ type: 'pyroscope', endpoint: 'http://c:1', basicAuth: { username: 'u', password: '${TOKEN}' } }, /exporters\[0\]\.basicAuth\.password has/);
    bad({ type: 'pyroscope', endpoint: 'http://c:1', basicAuth: { username: 'a:b', password: 'p' } }, /basicAuth\.username cannot hold a ':'/);
    bad({ type: 'pyroscope', endpoint: 'http://c:1', tenantId: '${TOKEN}' }, /exporters\[0\]\.tenantId has/);
    // A password goes in base64: anything but control characters is fine.
    const ok = parseAgentConfig({ exporters: [{ type: 'pyroscope', endpoint: 'http://c:1', basicAuth: { username: 'u', password: 'pässwörd' } }] }, 'cfg.json', {});
    assert.equal(ok.pyroscope[0]!.basicAuth!.password, 'pässwörd');
  });

  it('refuses a timeout over an hour, which a timer would cut to 1 ms', () => {
    const timeout = (type: string, t: string) => parseAgentConfig({ exporters: [{ type, endpoint: 'http://c:1', timeout: t }] }, 'cfg.json', {});
    assert.equal(timeout('otlp', '1h').otlp[0]!.timeoutMs, 3_600_000);
    for (const type of ['otlp', 'parca', 'pyroscope']) {
      for (const t of ['61m', '1000h', `${'9'.repeat(400)}h`]) {
        assert.throws(() => timeout(type, t), (e: Error) => e instanceof UsageError && /exporters\[0\]\.timeout must be (at most 1h|a duration such as 10s)$/.test(e.message), `${type} ${t}`);
      }
    }
  });
});
