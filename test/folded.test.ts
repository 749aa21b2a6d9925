import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderFolded, sanitizeFoldedName } from '../src/output/folded.js';
import { knownProfile, largeProfile, offCpuProfile, PERIOD, scalingRatio } from './fixtures/output-profile.js';

/** flamegraph.pl's pattern for a stack line; anything else it skips (and so do inferno and speedscope). */
const FLAMEGRAPH_PL_LINE = /^(.*)\s+?(\d+(?:\.\d*)?)$/;

describe('folded stacks', () => {
  it('prints one sorted line per unique stack, process name first, kernel frames marked _[k]', () => {
    assert.equal(renderFolded(knownProfile()), [
      'myserver;main;handle_request;memcpy 2',
      'myserver;main;handle_request;parse_header 4',
      'myserver;main;handle_request;write;entry_SYSCALL_64_[k];ksys_write_[k] 5',
      'myserver;main;odd:name with newline 1',
      'other;[unknown] 4',
      '',
    ].join('\n'));
  });

  it('uses the value of a chosen sample type', () => {
    const lines = renderFolded(knownProfile(), { sampleType: 'cpu' }).trimEnd().split('\n');
    assert.equal(lines[1], `myserver;main;handle_request;parse_header ${4 * PERIOD}`);
    assert.deepEqual(renderFolded(knownProfile(), { sampleType: 0 }), renderFolded(knownProfile()));
    assert.throws(() => renderFolded(knownProfile(), { sampleType: 'off_cpu' }), /unknown sample type "off_cpu": the profile has samples, cpu/);
  });

  it('falls back to the thread name as root when the process name is missing', () => {
    const p = knownProfile();
    for (const s of p.samples) delete s.labels['process.name'];
    const roots = new Set(renderFolded(p).trimEnd().split('\n').map((l) => l.split(';')[0]));
    assert.deepEqual([...roots].sort(), ['myserver', 'other', 'worker']);
  });

  it('leaves out zero values and writes nothing for an empty profile', () => {
    const p = knownProfile();
    p.samples[4]!.values = [0, 0];
    assert.doesNotMatch(renderFolded(p), /other/);
    p.samples = [];
    assert.equal(renderFolded(p), '');
  });

  it('makes any name safe for flamegraph.pl', () => {
    assert.equal(sanitizeFoldedName('a;b\r\n\tc'), 'a:b c');
    assert.equal(sanitizeFoldedName('std::vector<int>::push_back(int const&)'), 'std::vector<int>::push_back(int const&)');
  });

  it('writes a profile with off-CPU time in wall nanoseconds and says so in a first comment line', () => {
    assert.equal(renderFolded(offCpuProfile()), [
      '# flamewire folded stacks: wall nanoseconds (on-CPU + off-CPU time)',
      `myserver;main;handle_request;memcpy ${2 * PERIOD}`,
      `myserver;main;handle_request;parse_header ${4 * PERIOD}`,
      'myserver;main;handle_request;pthread_cond_wait;futex_wait_[k];schedule_[k] 700000000',
      `myserver;main;handle_request;write;entry_SYSCALL_64_[k];ksys_write_[k] ${5 * PERIOD}`,
      'myserver;main;handle_request;write;entry_SYSCALL_64_[k];ksys_write_[k];schedule_[k] 300000000',
      `myserver;main;odd:name with newline ${PERIOD}`,
      `other;[unknown] ${4 * PERIOD}`,
      'other;[unknown];schedule_[k] 50000000',
      '',
    ].join('\n'));
    assert.equal(renderFolded(offCpuProfile(), { sampleType: 'wall' }), renderFolded(offCpuProfile()));
  });

  it('names any chosen sample type of an off-CPU profile in the comment line', () => {
    assert.deepEqual(renderFolded(offCpuProfile(), { sampleType: 'off_cpu' }).trimEnd().split('\n'), [
      '# flamewire folded stacks: off_cpu nanoseconds (off-CPU time: blocked or waiting for a CPU)',
      'myserver;main;handle_request;pthread_cond_wait;futex_wait_[k];schedule_[k] 700000000',
      'myserver;main;handle_request;write;entry_SYSCALL_64_[k];ksys_write_[k];schedule_[k] 300000000',
      'other;[unknown];schedule_[k] 50000000',
    ]);
    const cpu = renderFolded(offCpuProfile(), { sampleType: 1 }).split('\n');
    assert.equal(cpu[0], '# flamewire folded stacks: cpu nanoseconds (on-CPU time)');
    assert.equal(cpu.slice(1).join('\n'), renderFolded(knownProfile(), { sampleType: 'cpu' }), 'the same stacks as without off-CPU time');
    const samples = renderFolded(offCpuProfile(), { sampleType: 'samples' }).split('\n');
    assert.equal(samples[0], '# flamewire folded stacks: samples (on-CPU sample count)');
    assert.equal(samples.slice(1).join('\n'), renderFolded(knownProfile()));
  });

  it('keeps the comment line out of every folded-stacks reader, whatever the type is called', () => {
    const p = offCpuProfile();
    p.sampleTypes.push({ type: 'lock_wait 2', unit: '' }, { type: 'queue\ndepth', unit: '7' });
    for (const s of p.samples) s.values.push(1, 1);
    for (let t = 0; t < p.sampleTypes.length; t++) {
      const lines = renderFolded(p, { sampleType: t }).trimEnd().split('\n');
      assert.match(lines[0]!, /^# flamewire folded stacks: [^\n]*\)$/);
      assert.doesNotMatch(lines[0]!, FLAMEGRAPH_PL_LINE, 'flamegraph.pl would read it as a stack');
      assert.ok(Number.isNaN(Number(lines[0]!.slice(lines[0]!.lastIndexOf(' ') + 1))), 'inferno would read a value');
      for (const line of lines.slice(1)) assert.match(line, FLAMEGRAPH_PL_LINE);
    }
    assert.equal(renderFolded(p, { sampleType: 5 }).split('\n')[0], '# flamewire folded stacks: queue depth (7)');
  });

  it('writes only the comment line for an off-CPU profile without samples, and no comment without off-CPU time', () => {
    const p = offCpuProfile();
    p.samples = [];
    assert.equal(renderFolded(p), '# flamewire folded stacks: wall nanoseconds (on-CPU + off-CPU time)\n');
    for (const sampleType of [undefined, 'samples', 'cpu']) {
      assert.doesNotMatch(renderFolded(knownProfile(), { sampleType }), /^#/m);
    }
  });

  it('renders 100k distinct stacks in time that grows linearly', () => {
    const ratio = scalingRatio((p) => renderFolded(p));
    assert.ok(ratio < 9, `100k stacks took ${ratio.toFixed(1)}x the time of 25k`);
    assert.equal(renderFolded(largeProfile(100_000, 24)).split('\n').length - 1, 100_000);
  });
});
