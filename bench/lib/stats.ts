/** Medians, spreads and ratios of repeated runs. */
export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function summarize(all: number[]): Summary {
  const xs = all.filter((x) => Number.isFinite(x));
  if (!xs.length) return { median: NaN, min: NaN, max: NaN, runs: all };
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: all };
}

/** Ratios of paired runs (same round), summarized: the way to compare paths. */
export function pairedRatio(a: number[], b: number[]): Summary {
  const n = Math.min(a.length, b.length);
  return summarize(Array.from({ length: n }, (_, i) => a[i] / b[i]));
}
