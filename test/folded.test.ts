import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderFolded, sanitizeFoldedName } from '../src/output/folded.js';
import { knownProfile, largeProfile, PERIOD, scalingRatio } from './fixtures/output-profile.js';

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

  it('renders 100k distinct stacks in time that grows linearly', () => {
    const ratio = scalingRatio((p) => renderFolded(p));
    assert.ok(ratio < 9, `100k stacks took ${ratio.toFixed(1)}x the time of 25k`);
    assert.equal(renderFolded(largeProfile(100_000, 24)).split('\n').length - 1, 100_000);
  });
});
