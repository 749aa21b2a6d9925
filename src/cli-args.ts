// Argument parsing for the command line contract in DESIGN.md. Options come first; the first
// `--` (or, perf-style, the first word that is not an option) starts the command to run.
// Every mistake is a UsageError with one line that says what is wrong.

import { parseDuration, parseDurationNs } from './duration.js';
import type { PyroscopeOptions } from './export/pyroscope.js';
import type { ExporterOptions } from './otlp/exporter.js';
import { checkEndpoint, checkHeaders, endpointVariable, otlpFromEnv, parseHeaders, resourceFromEnv } from './otel-env.js';
import { readAgentConfig } from './agent-config.js';
import { inClusterConfig, type InClusterConfig } from './k8s/in-cluster.js';
import type { Attributes } from './otlp/profiles.js';
import { OutputFormatError, outputFormatFor, type OutputFormat } from './output/format.js';

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface RecordOptions {
  pids: number[];
  durationMs?: number;
  frequency: number;
  offCpu: boolean;
  /** Blocks shorter than this are counted, not recorded (nanoseconds). */
  offCpuThresholdNs: number;
  /** Which sample type folded/speedscope values carry and the flame graph shows first. */
  value?: string;
  output: string;
  format: OutputFormat;
  command: string[];
  verbose: boolean;
  quiet: boolean;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface AgentOptions {
  pids: number[];
  frequency: number;
  offCpu: boolean;
  intervalMs: number;
  /** Stop after this long (trials, tests); default: until SIGTERM/SIGINT/SIGHUP. */
  durationMs?: number;
  /** OTLP destinations (none with --no-otlp). */
  otlp: ExporterOptions[];
  /** Pyroscope servers fed through /ingest (config file only). */
  pyroscope: PyroscopeOptions[];
  /** One pprof file per window in each of these directories. */
  outputDirs: string[];
  queueBytes: number;
  shutdownTimeoutMs: number;
  logLevel: LogLevel;
  /** host:port (or :port) for /metrics, /healthz and /readyz; none when undefined. */
  metricsAddress?: string;
  /** OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME. */
  resource: Attributes;
  /** Pod metadata from the Kubernetes API (--kubernetes), for this node's pods. */
  kubernetes?: { nodeName: string; config: InClusterConfig };
}

export type Parsed =
  | { kind: 'record'; options: RecordOptions }
  | { kind: 'agent'; options: AgentOptions }
  | { kind: 'doctor'; json: boolean }
  | { kind: 'help'; topic?: string }
  | { kind: 'version' };

interface OptionSpec {
  long: string;
  short?: string;
  takesValue: boolean;
}

const RECORD_OPTIONS: OptionSpec[] = [
  { long: 'pid', short: 'p', takesValue: true },
  { long: 'duration', short: 'd', takesValue: true },
  { long: 'frequency', short: 'F', takesValue: true },
  { long: 'off-cpu', takesValue: false },
  { long: 'off-cpu-threshold', takesValue: true },
  { long: 'value', takesValue: true },
  { long: 'output', short: 'o', takesValue: true },
  { long: 'format', takesValue: true },
  { long: 'verbose', short: 'v', takesValue: false },
  { long: 'quiet', short: 'q', takesValue: false },
  { long: 'help', short: 'h', takesValue: false },
];

const AGENT_OPTIONS: OptionSpec[] = [
  { long: 'pid', short: 'p', takesValue: true },
  { long: 'frequency', short: 'F', takesValue: true },
  { long: 'off-cpu', takesValue: false },
  { long: 'interval', takesValue: true },
  { long: 'duration', short: 'd', takesValue: true },
  { long: 'otlp-endpoint', takesValue: true },
  { long: 'otlp-protocol', takesValue: true },
  { long: 'otlp-header', takesValue: true },
  { long: 'otlp-insecure', takesValue: false },
  { long: 'no-otlp', takesValue: false },
  { long: 'output-dir', takesValue: true },
  { long: 'queue-size', takesValue: true },
  { long: 'shutdown-timeout', takesValue: true },
  { long: 'log-level', takesValue: true },
  { long: 'metrics-address', takesValue: true },
  { long: 'config', takesValue: true },
  { long: 'kubernetes', takesValue: true },
  { long: 'node-name', takesValue: true },
  { long: 'help', short: 'h', takesValue: false },
];

const DOCTOR_OPTIONS: OptionSpec[] = [
  { long: 'json', takesValue: false },
  { long: 'help', short: 'h', takesValue: false },
];

export const DEFAULT_FREQUENCY = 99;
/** FW_DEFAULT_OFF_CPU_THRESHOLD_NS in bpf/oncpu.h. */
export const DEFAULT_OFF_CPU_THRESHOLD_NS = 100_000;
const MAX_OFF_CPU_THRESHOLD_NS = 3600e9;
/** perf's default kernel.perf_event_max_sample_rate ceiling is 100 kHz; cpu-clock above ~10 kHz distorts what it measures. */
export const MAX_FREQUENCY = 10_000;

export function parseArgs(argv: string[]): Parsed {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') return { kind: 'help', topic: rest[0] };
  if (sub === '-V' || sub === '--version' || sub === 'version') return { kind: 'version' };
  if (sub === 'record') return parseRecord(rest);
  if (sub === 'doctor') {
    const { values, command } = scan(rest, DOCTOR_OPTIONS, 'doctor');
    if (values.has('help')) return { kind: 'help', topic: 'doctor' };
    if (command.length > 0) throw new UsageError(`doctor takes no arguments (got '${command[0]}')`);
    return { kind: 'doctor', json: values.has('json') };
  }
  if (sub === 'agent') return parseAgent(rest);
  if (sub.startsWith('-')) throw new UsageError(`unknown option '${sub}' (expected a command: record, agent, doctor)`);
  throw new UsageError(`unknown command '${sub}' (expected: record, agent, doctor)`);
}

/** The longest --interval: a day (well within a timer's 24.8 days). */
const MAX_AGENT_TIME_MS = 24 * 3_600_000;
/** Waiting longer than an hour for the last windows is a slip (a unit missing), not a wish. */
const MAX_SHUTDOWN_TIMEOUT_MS = 3_600_000;

/** 19 Hz, like Parca's and Grafana Alloy's agents: a prime, so it never beats with periodic work. */
export const DEFAULT_AGENT_FREQUENCY = 19;

function parseAgent(args: string[]): Parsed {
  const { values, command } = scan(args, AGENT_OPTIONS, 'agent');
  if (values.has('help')) return { kind: 'help', topic: 'agent' };
  if (command.length > 0) throw new UsageError(`agent takes no command (got '${command[0]}'); use --pid to limit it`);
  const get = (k: string) => values.get(k)?.at(-1);
  /** A duration flag; `maxMs`: the longest that makes sense (none for --duration, whose timer takes any). */
  const time = (k: string, fallback: number, maxMs = Infinity): number => {
    const v = get(k);
    if (v === undefined) return fallback;
    const ms = parseDuration(v);
    if (ms === undefined || ms <= 0) throw new UsageError(`invalid --${k} '${v}' (examples: 500ms, 15s, 2m)`);
    if (ms > maxMs) throw new UsageError(`invalid --${k} '${v}' (at most ${maxMs / 3_600_000}h)`);
    return ms;
  };
  const frequency = parseFrequency(get('frequency'), DEFAULT_AGENT_FREQUENCY);
  const config = get('config') === undefined ? undefined : readAgentConfig(get('config')!);
  const otlp: ExporterOptions[] = [...(config?.otlp ?? [])];
  // The exporter of the flags and OTEL_* variables: unless turned off, or a config file says
  // where to send and no flag asks for more.
  const otlpFlags = ['otlp-endpoint', 'otlp-protocol', 'otlp-header', 'otlp-insecure'].some((k) => values.has(k));
  if (!values.has('no-otlp') && (!config || otlpFlags)) {
    const e = otlpFromEnv(process.env, { checkFiles: true });
    const endpoint = get('otlp-endpoint');
    const protocol = get('otlp-protocol');
    if (protocol !== undefined) {
      if (protocol !== 'grpc' && protocol !== 'http/protobuf') throw new UsageError(`invalid --otlp-protocol '${protocol}' (grpc or http/protobuf)`);
      e.protocol = protocol;
    }
    if (endpoint !== undefined) {
      if (!/^https?:\/\/[^/]+/.test(endpoint)) throw new UsageError(`invalid --otlp-endpoint '${endpoint}' (e.g. http://localhost:4317)`);
      checkEndpoint(endpoint, e.protocol, '--otlp-endpoint');
      e.endpoint = endpoint;
      delete e.url;
    } else if (protocol !== undefined && endpointVariable()) {
      // Checked for the protocol of the environment; the flag may have changed it.
      checkEndpoint(e.url ?? e.endpoint, e.protocol, endpointVariable()!);
    }
    for (const h of values.get('otlp-header') ?? []) e.headers = { ...e.headers, ...checkHeaders(parseHeaders(h, '--otlp-header'), '--otlp-header') };
    if (values.has('otlp-insecure')) e.insecure = true;
    otlp.push(e);
  }
  const outputDirs = [...(config?.outputDirs ?? []), ...(values.get('output-dir') ?? [])];
  const pyroscope = config?.pyroscope ?? [];
  if (otlp.length === 0 && pyroscope.length === 0 && outputDirs.length === 0) throw new UsageError('--no-otlp leaves nowhere to send profiles: add --output-dir');
  const level = get('log-level') ?? process.env.FLAMEWIRE_LOG_LEVEL ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new UsageError(`invalid --log-level '${level}' (debug, info, warn or error)`);
  const q = get('queue-size');
  const queueBytes = q === undefined ? 64 << 20 : parseSize(q);
  if (!(queueBytes > 0)) throw new UsageError(`invalid --queue-size '${q}' (examples: 64MiB, 512KiB)`);
  const durationMs = get('duration') === undefined ? undefined : time('duration', 0);
  const metricsAddress = get('metrics-address');
  if (metricsAddress !== undefined && !/^[^:]*:\d{1,5}$/.test(metricsAddress)) throw new UsageError(`invalid --metrics-address '${metricsAddress}' (host:port or :port)`);
  return {
    kind: 'agent',
    options: {
      pids: parsePids(values.get('pid') ?? []),
      frequency,
      offCpu: values.has('off-cpu'),
      intervalMs: time('interval', 15_000, MAX_AGENT_TIME_MS),
      durationMs,
      otlp,
      pyroscope,
      outputDirs,
      queueBytes,
      shutdownTimeoutMs: time('shutdown-timeout', 5_000, MAX_SHUTDOWN_TIMEOUT_MS),
      logLevel: level as LogLevel,
      metricsAddress,
      resource: resourceFromEnv(),
      kubernetes: parseKubernetes(get('kubernetes'), get('node-name')),
    },
  };
}

/**
 * --kubernetes auto|on|off and the node's name. auto: on inside a pod (the API server's address
 * in the environment and a ServiceAccount token mounted), off elsewhere.
 */
function parseKubernetes(mode = 'auto', flagNode: string | undefined, env: Record<string, string | undefined> = process.env): AgentOptions['kubernetes'] {
  if (mode !== 'auto' && mode !== 'on' && mode !== 'off') throw new UsageError(`invalid --kubernetes '${mode}' (auto, on or off)`);
  if (mode === 'off') return undefined;
  const config = inClusterConfig(env);
  if (typeof config === 'string') {
    if (mode === 'on') throw new UsageError(`--kubernetes on: ${config}`);
    return undefined;
  }
  const nodeName = (flagNode ?? env.NODE_NAME ?? '').trim();
  if (!nodeName) throw new UsageError('pod metadata needs the name of this node: --node-name or NODE_NAME (from the downward API, spec.nodeName); --kubernetes off goes without');
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(nodeName)) throw new UsageError(`invalid node name '${nodeName}' (a Kubernetes node name: lower case letters, digits, '-' and '.')`);
  return { nodeName, config };
}

/** 64MiB, 512KiB, 1GiB, 1000 (bytes); NaN when unreadable. */
export function parseSize(v: string): number {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$/i.exec(v.trim());
  if (!m) return NaN;
  const unit = (m[2] ?? 'B').toLowerCase();
  const mult: Record<string, number> = { b: 1, kib: 1024, mib: 1 << 20, gib: 1 << 30, kb: 1e3, mb: 1e6, gb: 1e9 };
  return Number(m[1]) * mult[unit]!;
}

function parsePids(list: string[]): number[] {
  const pids: number[] = [];
  for (const v of list) {
    for (const part of v.split(',')) {
      if (!/^\d+$/.test(part.trim()) || Number(part) <= 0) throw new UsageError(`invalid pid '${part}' in --pid ${v}`);
      pids.push(Number(part));
    }
  }
  return pids;
}

function parseFrequency(f: string | undefined, fallback: number): number {
  if (f === undefined) return fallback;
  if (!/^\d+$/.test(f) || Number(f) < 1 || Number(f) > MAX_FREQUENCY) {
    throw new UsageError(`invalid frequency '${f}' (a whole number of Hz from 1 to ${MAX_FREQUENCY})`);
  }
  return Number(f);
}

function parseRecord(args: string[]): Parsed {
  const { values, command } = scan(args, RECORD_OPTIONS, 'record');
  if (values.has('help')) return { kind: 'help', topic: 'record' };
  const get = (k: string) => values.get(k)?.at(-1);

  const pids = parsePids(values.get('pid') ?? []);
  if (pids.length > 0 && command.length > 0) throw new UsageError('give either --pid or a command after --, not both');

  let durationMs: number | undefined;
  const d = get('duration');
  if (d !== undefined) {
    durationMs = parseDuration(d);
    if (durationMs === undefined || durationMs <= 0) throw new UsageError(`invalid duration '${d}' (examples: 500ms, 10s, 2m)`);
  }

  const frequency = parseFrequency(get('frequency'), DEFAULT_FREQUENCY);

  const offCpu = values.has('off-cpu');
  let offCpuThresholdNs = DEFAULT_OFF_CPU_THRESHOLD_NS;
  const th = get('off-cpu-threshold');
  if (th !== undefined) {
    if (!offCpu) throw new UsageError('--off-cpu-threshold needs --off-cpu');
    const ns = parseDurationNs(th);
    if (ns === undefined || ns > MAX_OFF_CPU_THRESHOLD_NS) {
      throw new UsageError(`invalid off-CPU threshold '${th}' (examples: 0, 100us, 1ms; at most 1h)`);
    }
    offCpuThresholdNs = ns;
  }
  const value = get('value');
  const views = offCpu ? ['samples', 'cpu', 'off_cpu', 'wall'] : ['samples', 'cpu'];
  if (value !== undefined && !views.includes(value)) {
    throw new UsageError(`invalid --value '${value}' (one of: ${views.join(', ')}${offCpu ? '' : '; off_cpu and wall need --off-cpu'})`);
  }

  const output = get('output') ?? 'flamewire.pb.gz';
  let format: OutputFormat;
  try {
    format = outputFormatFor(output, get('format'));
  } catch (e) {
    if (e instanceof OutputFormatError) throw new UsageError(e.message);
    throw e;
  }

  return {
    kind: 'record',
    options: {
      pids,
      durationMs,
      frequency,
      offCpu,
      offCpuThresholdNs,
      value,
      output,
      format,
      command,
      verbose: values.has('verbose'),
      quiet: values.has('quiet'),
    },
  };
}

/** Splits options from the trailing command. Accepts --opt=value, --opt value, -o value, -ovalue. */
function scan(args: string[], specs: OptionSpec[], sub: string): { values: Map<string, string[]>; command: string[] } {
  const values = new Map<string, string[]>();
  const put = (k: string, v: string) => values.set(k, [...(values.get(k) ?? []), v]);
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    let spec: OptionSpec | undefined;
    let inline: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      if (eq >= 0) inline = a.slice(eq + 1);
      spec = specs.find((s) => s.long === name);
      if (!spec) throw new UsageError(`unknown option '--${name}' for ${sub} (see 'flamewire ${sub} --help')`);
    } else {
      const letter = a[1];
      spec = specs.find((s) => s.short === letter);
      if (!spec) throw new UsageError(`unknown option '-${letter}' for ${sub} (see 'flamewire ${sub} --help')`);
      if (a.length > 2) {
        if (!spec.takesValue) throw new UsageError(`option '-${letter}' takes no value (in '${a}')`);
        inline = a.slice(2);
      }
    }
    if (spec.takesValue) {
      let v = inline;
      if (v === undefined) {
        if (i + 1 >= args.length) throw new UsageError(`option '--${spec.long}' needs a value`);
        v = args[++i];
      }
      put(spec.long, v);
    } else {
      if (inline !== undefined) throw new UsageError(`option '--${spec.long}' takes no value`);
      put(spec.long, '');
    }
  }
  return { values, command: args.slice(i) };
}

export const HELP: Record<string, string> = {
  main: `flamewire — eBPF profiler for Linux

usage:
  flamewire record [options] [-- command [args...]]   profile and write a flame graph or profile
  flamewire agent [options]                           profile continuously, send to a backend
  flamewire doctor                                    what this kernel and these privileges allow

Run 'flamewire record --help' for the options.`,
  record: `usage: flamewire record [options] [-- command [args...]]

  -p, --pid <pid[,pid...]>   only these processes (default: the command, else the whole machine)
  -d, --duration <time>      e.g. 500ms, 10s, 2m (default: until the command exits or Ctrl-C)
  -F, --frequency <hz>       on-CPU samples per second per CPU (default ${DEFAULT_FREQUENCY})
      --off-cpu              also record off-CPU time: where threads block, and for how
                             long; the profile gets off_cpu and wall (CPU + blocked) values
      --off-cpu-threshold <t>  shorter blocks are counted, not recorded (default 100us;
                             e.g. 0, 50us, 1ms)
      --value <type>         the value folded/speedscope files carry and the flame graph shows
                             first: samples | cpu | off_cpu | wall (default: wall with
                             --off-cpu, else samples for folded, cpu otherwise)
  -o, --output <file>        format from the extension: .pb.gz/.pprof → pprof,
                             .folded/.txt → folded stacks, .html → flame graph,
                             .json → speedscope (default flamewire.pb.gz)
      --format <name>        pprof | folded | speedscope | html (overrides the extension)
  -v, --verbose              debug logs on stderr
  -q, --quiet                no status line or summary`,
  agent: `usage: flamewire agent [options]

Profiles the whole machine (or --pid) all the time and sends a profile per process every
--interval: OTLP Profiles to a collector, Pyroscope or Parca, and/or pprof files to a directory.
Logs are JSON lines on stdout. SIGTERM, SIGINT and SIGHUP close the last window, send it within
--shutdown-timeout and stop (SIGHUP does not reload: restart the agent with the new settings).

  -p, --pid <pid[,pid...]>     only these processes (default: the whole machine)
  -F, --frequency <hz>         on-CPU samples per second per CPU (default ${DEFAULT_AGENT_FREQUENCY})
      --off-cpu                also off-CPU time (threads' blocks, goroutines' waits)
      --interval <time>        window length (default 15s, at most 24h)
      --otlp-endpoint <url>    default OTEL_EXPORTER_OTLP_[PROFILES_]ENDPOINT, else
                               http://localhost:4317 (grpc) / http://localhost:4318 (http)
      --otlp-protocol <p>      grpc | http/protobuf (default OTEL_EXPORTER_OTLP_[PROFILES_]PROTOCOL,
                               else grpc); headers, compression, timeout, TLS files: OTEL_* variables
      --otlp-header <k=v,...>  extra request headers (e.g. authorization)
      --otlp-insecure          plain-text gRPC to an endpoint given without a scheme
      --no-otlp                no OTLP export (with --output-dir)
      --output-dir <dir>       also write one pprof file per window there
      --config <file>          JSON: several destinations at once, also Parca's WriteRaw and
                               Pyroscope's /ingest (see src/agent-config.ts)
      --queue-size <size>      windows waiting for a destination, at most (default 64MiB;
                               the oldest are dropped, and counted, when full)
      --shutdown-timeout <t>   time to deliver the last windows on SIGTERM/SIGINT/SIGHUP
                               (default 5s, at most 1h); what is not delivered by then is
                               counted as dropped at shutdown
  -d, --duration <time>        stop after this long (default: until SIGTERM/SIGINT/SIGHUP)
      --log-level <level>      debug | info | warn | error (default info, or FLAMEWIRE_LOG_LEVEL)
      --metrics-address <a>    serve /metrics (Prometheus), /healthz and /readyz on host:port
                               or :port (default: not served)
      --kubernetes <mode>      auto | on | off: name each process by its pod (k8s.pod.name,
                               k8s.namespace.name, k8s.container.name, service.name ...) from
                               the Kubernetes API; auto (default): on inside a pod with a
                               ServiceAccount token
      --node-name <name>       this node, whose pods are watched (default NODE_NAME)`,
  doctor: `usage: flamewire doctor [--json]

Checks privileges, BTF, bpf(), perf_event_paranoid, tracefs and the BPF ring buffer, and prints
what works, what is missing, and how to fix it. Exits 1 when recording cannot work.`,
};
