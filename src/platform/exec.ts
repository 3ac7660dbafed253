// Small helper to run external commands (systemctl, and bpftool and tc in doctor; berth makes
// its links over rtnetlink, not ip) with a timeout and errors that carry the command line, exit code and stderr.
import { execFile } from 'node:child_process';

export interface RunOptions {
  /** Kill the command after this many milliseconds (default 15000). */
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Error thrown by run(): knows the command line, exit code and stderr. */
export class CommandError extends Error {
  constructor(
    readonly cmdline: string,
    readonly code: number | string | null,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    super(`command failed (exit ${code ?? 'unknown'}): ${cmdline}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
    this.name = 'CommandError';
  }
}

function quote(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(quote).join(' ');
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const cmdline = formatCommand(cmd, args);
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      [...args],
      { timeout: opts.timeoutMs ?? 15000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: number | string | null };
          const code = e.killed ? `timeout/${e.signal ?? 'killed'}` : (e.code ?? e.signal ?? null);
          reject(new CommandError(cmdline, code, String(stderr ?? e.message), String(stdout ?? '')));
          return;
        }
        resolve({ stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** Runs a command whose stdout is JSON (e.g. `ip -j ...`). Empty output → null. */
export async function runJson<T>(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<T | null> {
  const { stdout } = await run(cmd, args, opts);
  const text = stdout.trim();
  if (text === '') return null;
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new Error(`${formatCommand(cmd, args)}: invalid JSON output: ${(err as Error).message}`);
  }
}
