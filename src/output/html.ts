// The HTML flame graph: one self-contained file (no network, opens from file://) with the call
// tree embedded as a gzipped, base64 payload and drawn on a <canvas> by the inlined page script.
// Names never reach the HTML: they travel inside the payload and the page only sets them as
// text (textContent, canvas fillText), so `<`, `&`, quotes or `</script>` in names are inert.

import type { Profile } from '../profile-model.js';
import { buildFlameTree, encodeFlameTree } from './flamegraph-page/flame-tree.js';
import { PAGE_SCRIPT } from './flamegraph-page/page-script.js';
import { PAGE_STYLE } from './flamegraph-page/page-style.js';

export interface HtmlOptions {
  /** Page title and heading; default "flamewire flame graph". */
  title?: string;
  /** Sample type shown first (index into profile.sampleTypes); default profile.defaultSampleType. */
  sampleType?: number;
}

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Inline <script>/<style> bodies end at the first `</script` / `</style`, whatever the context. */
function assertInlineSafe(body: string, tag: string): string {
  if (new RegExp(`</${tag}`, 'i').test(body)) throw new Error(`flame graph: inline ${tag} contains </${tag}`);
  return body;
}

// Swatches for the legend; the page script's palette draws the frames in the same hues.
const LEGEND: [string, string][] = [
  ['kernel', 'rgb(245,160,48)'],
  ['native', 'rgb(235,95,65)'],
  ['go', 'rgb(90,200,215)'],
  ['unknown', 'rgb(190,190,190)'],
  ['process', 'rgb(190,175,235)'],
];

export function renderHtml(profile: Profile, opts: HtmlOptions = {}): string {
  const title = opts.title ?? 'flamewire flame graph';
  const nTypes = profile.sampleTypes.length;
  const requested = opts.sampleType ?? profile.defaultSampleType;
  if (nTypes > 0 && (!Number.isInteger(requested) || requested < 0 || requested >= nTypes)) {
    throw new RangeError(`flame graph: sample type ${requested} out of range (profile has ${nTypes})`);
  }
  const payload = encodeFlameTree(buildFlameTree(profile, title, nTypes > 0 ? requested : 0)).toString('base64');
  const t = escapeHtml(title);
  const legend = LEGEND.map(([k, c]) => `<span style="--c:${c}">${k}</span>`).join('');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src data: blob:">
<title>${t}</title>
<style>${assertInlineSafe(PAGE_STYLE, 'style')}</style>
</head>
<body>
<header>
<h1 id="title">${t}</h1>
<div class="summary" id="summary"></div>
<div class="controls">
<button id="reset" type="button" title="Show everything (Esc)" disabled>Reset zoom</button>
<button id="up" type="button" title="Zoom out one level" disabled>Up</button>
<label id="typeWrap">Value <select id="type" aria-label="Sample type"></select></label>
<input id="search" type="search" placeholder="Search: regex or text (Ctrl+F)" aria-label="Search frames" autocomplete="off" spellcheck="false">
<span id="match" aria-live="polite"></span>
<div class="legend">${legend}</div>
</div>
<div id="crumbs"></div>
</header>
<main>
<div id="status">Loading the flame graph…<noscript> This page needs JavaScript.</noscript></div>
<div id="graph"><canvas id="flame" height="0"></canvas></div>
</main>
<div id="tip" role="tooltip"></div>
<footer id="footer"></footer>
<script id="flamewire-data" type="application/octet-stream">${payload}</script>
<script>${assertInlineSafe(PAGE_SCRIPT, 'script')}</script>
</body>
</html>
`;
}
