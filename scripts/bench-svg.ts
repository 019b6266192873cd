// The benchmark's picture, as plain SVG text: the attach comparison (median bars with
// min-max whiskers) and the fan-out scaling curve, with the machine they were taken on.

export interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
}

export interface Results {
  machine: { cpu: string; cores: number; kernel: string; node: string; loadavg: number[]; loadavgAfter?: number[] };
  date: string;
  rounds: number;
  attach?: Record<string, Stat>;
  ratios?: Record<string, number>;
  phases?: Record<string, Record<string, number>>;
  rss?: Record<string, Stat>;
  fanout?: Record<string, Stat>;
  hung?: Record<string, Stat>;
  load?: Record<string, { wall: Stat; cpu: Stat }>;
  images?: Record<string, number>;
  forward?: Record<string, { latencyMs: number; mibps: number; concurrentMs: number }>;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f1 = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));

/** A round step for an axis that reaches `max` in about `ticks` steps. */
function step(max: number, ticks = 5): number {
  const raw = max / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
}

const W = 860;
const FONT = 'font-family="DejaVu Sans, Verdana, sans-serif"';

function bars(attach: Record<string, Stat>, top: number): { svg: string[]; height: number } {
  const rows = Object.entries(attach).sort((a, b) => a[1].median - b[1].median);
  const left = 330;
  const right = W - 90;
  const rowH = 26;
  const max = Math.max(...rows.map(([, s]) => s.max));
  const unit = step(max);
  const scale = (right - left) / (Math.ceil(max / unit) * unit);
  const out: string[] = [];
  const y0 = top + 28;
  out.push(`<text x="20" y="${top + 14}" font-size="15" font-weight="bold">Attach and run true: median wall time, min-max over the rounds (ms)</text>`);
  for (let v = 0; v <= max + 1e-9; v += unit) {
    const x = left + v * scale;
    out.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + rows.length * rowH}" stroke="#ddd"/>`);
    out.push(`<text x="${x}" y="${y0 + rows.length * rowH + 14}" font-size="11" text-anchor="middle" fill="#555">${v}</text>`);
  }
  rows.forEach(([name, s], i) => {
    const y = y0 + i * rowH;
    const crashcart = name.startsWith('crashcart');
    out.push(`<text x="${left - 8}" y="${y + 17}" font-size="12" text-anchor="end">${esc(name)}</text>`);
    out.push(`<rect x="${left}" y="${y + 5}" width="${Math.max(1, s.median * scale)}" height="${rowH - 10}" fill="${crashcart ? '#d9822b' : '#5b8cc8'}"/>`);
    out.push(`<line x1="${left + s.min * scale}" y1="${y + rowH / 2}" x2="${left + s.max * scale}" y2="${y + rowH / 2}" stroke="#222"/>`);
    for (const v of [s.min, s.max]) out.push(`<line x1="${left + v * scale}" y1="${y + 8}" x2="${left + v * scale}" y2="${y + rowH - 8}" stroke="#222"/>`);
    out.push(`<text x="${left + s.max * scale + 6}" y="${y + 17}" font-size="11" fill="#333">${f1(s.median)}</text>`);
  });
  return { svg: out, height: 28 + rows.length * rowH + 24 };
}

function curve(fanout: Record<string, Stat>, top: number, warm?: number): { svg: string[]; height: number } {
  const pts = Object.entries(fanout).map(([n, s]) => [Number(n), s] as const).sort((a, b) => a[0] - b[0]);
  const left = 80;
  const right = W - 200;
  const h = 220;
  const y0 = top + 28;
  const maxN = Math.max(...pts.map(([n]) => n));
  const maxMs = Math.max(...pts.map(([, s]) => s.max), warm ? warm * 3 : 0);
  const nStep = step(maxN);
  const msStep = step(maxMs);
  const msTop = Math.ceil(maxMs / msStep) * msStep;
  const x = (n: number) => left + (n / (Math.ceil(maxN / nStep) * nStep)) * (right - left);
  const y = (ms: number) => y0 + h - (ms / msTop) * h;
  const out: string[] = [];
  out.push(`<text x="20" y="${top + 14}" font-size="15" font-weight="bold">Fan-out: crashcart c1,...,cN -- true in N containers, one process (median, min-max; ms)</text>`);
  for (let v = 0; v <= msTop + 1e-9; v += msStep) {
    out.push(`<line x1="${left}" y1="${y(v)}" x2="${right}" y2="${y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end" fill="#555">${v}</text>`);
  }
  for (let n = 0; n <= maxN + 1e-9; n += nStep) {
    out.push(`<text x="${x(n)}" y="${y0 + h + 16}" font-size="11" text-anchor="middle" fill="#555">${n}</text>`);
  }
  out.push(`<text x="${(left + right) / 2}" y="${y0 + h + 32}" font-size="12" text-anchor="middle">containers</text>`);
  if (warm) {
    out.push(`<line x1="${left}" y1="${y(warm)}" x2="${right}" y2="${y(warm)}" stroke="#5b8cc8" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${right + 6}" y="${y(warm) + 4}" font-size="11" fill="#5b8cc8">one warm attach</text>`);
    out.push(`<line x1="${left}" y1="${y(3 * warm)}" x2="${right}" y2="${y(3 * warm)}" stroke="#c44" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${right + 6}" y="${y(3 * warm) + 4}" font-size="11" fill="#c44">3 x one warm attach</text>`);
  }
  out.push(`<polyline fill="none" stroke="#d9822b" stroke-width="2" points="${pts.map(([n, s]) => `${x(n)},${y(s.median)}`).join(' ')}"/>`);
  for (const [n, s] of pts) {
    out.push(`<line x1="${x(n)}" y1="${y(s.min)}" x2="${x(n)}" y2="${y(s.max)}" stroke="#222"/>`);
    out.push(`<circle cx="${x(n)}" cy="${y(s.median)}" r="3.5" fill="#d9822b"/>`);
    out.push(`<text x="${x(n) + 6}" y="${y(s.median) - 6}" font-size="11" fill="#333">${f1(s.median)}</text>`);
  }
  const first = pts[0]![1].median;
  const last = pts.at(-1)!;
  if (pts.length > 1) {
    const per = (last[1].median - first) / (last[0] - pts[0]![0]);
    out.push(`<text x="${right + 6}" y="${y0 + h - 4}" font-size="11" fill="#333">${f1(per)} ms per container</text>`);
  }
  return { svg: out, height: 28 + h + 44 };
}

export function drawSvg(r: Results): string {
  const parts: string[] = [];
  let top = 10;
  if (r.attach) {
    const b = bars(r.attach, top);
    parts.push(...b.svg);
    top += b.height + 10;
  }
  if (r.fanout) {
    const c = curve(r.fanout, top, r.attach?.['crashcart, warm']?.median);
    parts.push(...c.svg);
    top += c.height + 10;
  }
  const m = r.machine;
  const ratios = r.ratios ? Object.entries(r.ratios).map(([k, v]) => `${k} x${v.toFixed(2)}`).join(', ') : '';
  parts.push(`<text x="20" y="${top + 6}" font-size="11" fill="#333">${esc(ratios)}</text>`);
  parts.push(`<text x="20" y="${top + 22}" font-size="11" fill="#555">${esc(`${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}, load average ${m.loadavg.join(' ')}${m.loadavgAfter ? ` (after: ${m.loadavgAfter.join(' ')})` : ''}; ${r.rounds} rounds, ${r.date.slice(0, 10)}`)}</text>`);
  const height = top + 34;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" ${FONT}>\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}
