/** Hand-written SVG charts: grouped horizontal bars with min-max whiskers, and line charts. */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#777777', '#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const fmt = (x: number) => (x >= 1000 ? x.toFixed(0) : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

export interface Bar {
  label: string;
  median: number;
  min: number;
  max: number;
}
export interface BarGroup {
  title: string;
  unit: string;
  bars: Bar[];
}

/** One panel per group (a metric of a scenario), one bar per path. */
export function barChart(title: string, groups: BarGroup[]): string {
  const W = 760;
  const labelW = 190;
  const barH = 16;
  const panelPad = 34;
  let y = 40;
  const parts: string[] = [];
  const paths = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.label)))];
  for (const g of groups) {
    const max = Math.max(...g.bars.map((b) => b.max), 1e-9);
    const scale = (W - labelW - 90) / max;
    parts.push(`<text x="10" y="${y}" font-weight="bold">${esc(g.title)} (${esc(g.unit)})</text>`);
    y += 8;
    for (const b of g.bars) {
      const c = COLORS[paths.indexOf(b.label) % COLORS.length];
      parts.push(`<text x="${labelW - 6}" y="${y + barH - 4}" text-anchor="end">${esc(b.label)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y}" width="${(b.median * scale).toFixed(1)}" height="${barH - 3}" fill="${c}"/>`);
      const x1 = labelW + b.min * scale;
      const x2 = labelW + b.max * scale;
      const ym = y + (barH - 3) / 2;
      parts.push(`<line x1="${x1.toFixed(1)}" y1="${ym}" x2="${x2.toFixed(1)}" y2="${ym}" stroke="#000"/>`);
      parts.push(`<text x="${(x2 + 6).toFixed(1)}" y="${y + barH - 4}">${fmt(b.median)}</text>`);
      y += barH;
    }
    y += panelPad - 8;
  }
  return svgDoc(title, W, y, parts, 'bars: median of the runs; whiskers: min-max');
}

export interface Series {
  label: string;
  points: Array<{ x: number; median: number; min: number; max: number }>;
}

/** Lines over x = number of other published ports (x drawn as equal steps). */
export function lineChart(title: string, panels: Array<{ title: string; unit: string; series: Series[] }>): string {
  const W = 760;
  const PH = 230;
  const parts: string[] = [];
  let y0 = 40;
  for (const p of panels) {
    const xs = [...new Set(p.series.flatMap((s) => s.points.map((q) => q.x)))].sort((a, b) => a - b);
    const ymax = Math.max(...p.series.flatMap((s) => s.points.map((q) => q.max)), 1e-9) * 1.1;
    const left = 80;
    const right = W - 170;
    const top = y0 + 14;
    const bottom = y0 + PH - 40;
    const X = (x: number) => left + (xs.length > 1 ? (xs.indexOf(x) / (xs.length - 1)) * (right - left) : 0);
    const Y = (v: number) => bottom - (v / ymax) * (bottom - top);
    parts.push(`<text x="10" y="${y0}" font-weight="bold">${esc(p.title)} (${esc(p.unit)})</text>`);
    parts.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#000"/><line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#000"/>`);
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4;
      parts.push(`<text x="${left - 6}" y="${Y(v) + 4}" text-anchor="end">${fmt(v)}</text><line x1="${left}" y1="${Y(v)}" x2="${right}" y2="${Y(v)}" stroke="#ddd"/>`);
    }
    for (const x of xs) parts.push(`<text x="${X(x)}" y="${bottom + 16}" text-anchor="middle">${x}</text>`);
    parts.push(`<text x="${(left + right) / 2}" y="${bottom + 32}" text-anchor="middle">other published ports</text>`);
    p.series.forEach((s, i) => {
      const c = COLORS[(i + 1) % COLORS.length];
      const pts = s.points.map((q) => `${X(q.x).toFixed(1)},${Y(q.median).toFixed(1)}`).join(' ');
      parts.push(`<polyline points="${pts}" fill="none" stroke="${c}" stroke-width="2"/>`);
      for (const q of s.points) {
        parts.push(`<circle cx="${X(q.x).toFixed(1)}" cy="${Y(q.median).toFixed(1)}" r="3" fill="${c}"/>`);
        parts.push(`<line x1="${X(q.x).toFixed(1)}" y1="${Y(q.min).toFixed(1)}" x2="${X(q.x).toFixed(1)}" y2="${Y(q.max).toFixed(1)}" stroke="${c}"/>`);
      }
      parts.push(`<rect x="${right + 14}" y="${top + i * 18}" width="12" height="10" fill="${c}"/><text x="${right + 30}" y="${top + i * 18 + 9}">${esc(s.label)}</text>`);
    });
    y0 += PH;
  }
  return svgDoc(title, W, y0, parts, 'points: median; bars: min-max');
}

function svgDoc(title: string, w: number, h: number, parts: string[], note: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h + 20}" viewBox="0 0 ${w} ${h + 20}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>
${parts.join('\n')}
<text x="10" y="${h + 10}" fill="#555">${esc(note)}</text>
</svg>
`;
}
