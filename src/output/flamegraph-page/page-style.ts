// The flame graph page's CSS, inlined into the single HTML file (no external fonts or sheets).

export const PAGE_STYLE = String.raw`
:root { color-scheme: light; --fg: #1d1f21; --muted: #5f6368; --line: #d6d6d6; --bg: #fafafa; }
* { box-sizing: border-box; }
html, body { margin: 0; padding: 0; background: var(--bg); color: var(--fg);
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { position: sticky; top: 0; z-index: 2; background: var(--bg); border-bottom: 1px solid var(--line);
  padding: 8px 12px 6px; }
h1 { font-size: 16px; margin: 0 0 4px; font-weight: 600; overflow-wrap: anywhere; }
.summary { color: var(--muted); margin-bottom: 6px; }
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.controls button, .controls select, .controls input { font: inherit; padding: 3px 8px; border: 1px solid #bbb;
  border-radius: 4px; background: #fff; color: var(--fg); }
.controls button:disabled { color: #aaa; }
.controls input[type=search] { width: 22em; }
.controls input.invalid { border-color: #c62828; }
#match { color: #8e24aa; font-weight: 600; min-width: 8em; }
.legend { display: flex; gap: 10px; margin-left: auto; color: var(--muted); font-size: 12px; }
.legend span::before { content: ""; display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  vertical-align: -1px; border-radius: 2px; background: var(--c); }
#crumbs { color: var(--muted); font-size: 12px; margin-top: 4px; min-height: 1.4em; overflow-wrap: anywhere; }
main { padding: 6px 12px; }
#graph { position: relative; }
canvas { display: block; width: 100%; cursor: pointer; }
#tip { position: fixed; z-index: 3; pointer-events: none; display: none; max-width: 560px; background: #fff;
  border: 1px solid #999; border-radius: 4px; padding: 6px 8px; box-shadow: 0 2px 8px rgba(0,0,0,.2);
  font-size: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
#tip .name { font-weight: 600; font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
#status { padding: 12px; color: var(--muted); }
#status.error { color: #c62828; }
footer { border-top: 1px solid var(--line); padding: 8px 12px 16px; color: var(--muted); font-size: 12px; }
footer ul { margin: 4px 0 0; padding-left: 18px; }
footer li { overflow-wrap: anywhere; }
`;
