// The OTLP exporter environment (OTEL_EXPORTER_OTLP_[PROFILES_]*, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_SERVICE_NAME) as the OTLP exporter specification reads it, and container ids from the
// /proc/PID/cgroup lines Docker, containerd (Kubernetes), CRI-O and Podman write, cgroup v1 and v2;
// the agent's config file.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAgentConfig } from '../src/agent-config.js';
import { UsageError } from '../src/cli-args.js';
import { idsFromCgroup } from '../src/container-id.js';
import { otlpFromEnv, resourceFromEnv } from '../src/otel-env.js';

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
  });

  it('refuses a timeout over an hour, which a timer would cut to 1 ms', () => {
    assert.equal(otlpFromEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: '3600000' }).timeoutMs, 3_600_000);
    for (const v of ['3600001', '2147483648', '9'.repeat(400)]) {
      assert.throws(() => otlpFromEnv({ OTEL_EXPORTER_OTLP_TIMEOUT: v }), (e: Error) => e instanceof UsageError && /^OTEL_EXPORTER_OTLP_TIMEOUT='\d+': milliseconds, e\.g\. 10000 \(at most 3600000, 1 h\)$/.test(e.message));
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
