/** Structured log lines on stderr: one JSON object per line. */
export type Level = 'debug' | 'info' | 'warn' | 'error';

let quiet = false;
export function setQuiet(q: boolean): void {
  quiet = q;
}

export function log(level: Level, msg: string, fields: Record<string, unknown> = {}): void {
  if (quiet && level !== 'error') return;
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }) + '\n');
}
