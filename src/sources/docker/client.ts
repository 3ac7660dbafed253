/**
 * A small Docker Engine API client over the daemon's unix socket, typed for
 * what berth reads: bridge networks, containers' network settings and the
 * /events stream. HTTP is undici's (an Agent whose connect.socketPath is the
 * socket); nothing here speaks HTTP by hand.
 *
 * API version: the paths are unversioned, so the daemon answers with its own
 * default version; every field read here exists from API 1.41 (Docker 20.10)
 * to current Docker.
 */
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/** One entry of `GET /networks` / `GET /networks/{id}` (the fields berth uses). */
export interface DockerNetwork {
  Name: string;
  Id: string;
  Driver: string;
  Internal?: boolean;
  EnableIPv6?: boolean;
  /** Docker 28+ (API 1.48): false for an IPv6-only network (--ipv4=false); absent before, IPv4 always on */
  EnableIPv4?: boolean;
  /** one entry per family (IPv4 and IPv6 subnets side by side); an IPv6 Gateway may be empty (the subnet's first address) */
  IPAM?: { Config?: ReadonlyArray<{ Subnet?: string; Gateway?: string }> | null };
  Options?: Readonly<Record<string, string>> | null;
  Labels?: Readonly<Record<string, string>> | null;
  Containers?: Readonly<Record<string, { Name?: string; EndpointID?: string; MacAddress?: string; IPv4Address?: string; IPv6Address?: string }>> | null;
}

export interface DockerEndpointSettings {
  NetworkID: string;
  EndpointID?: string;
  IPAddress: string;
  IPPrefixLen?: number;
  Gateway?: string;
  /** the endpoint's IPv6 address on an IPv6 network ('' when none) */
  GlobalIPv6Address?: string;
  GlobalIPv6PrefixLen?: number;
  IPv6Gateway?: string;
  MacAddress: string;
}

/** `GET /containers/{id}/json`, the fields berth uses. */
export interface DockerContainer {
  Id: string;
  Name: string;
  State: { Running: boolean; Pid: number; StartedAt?: string };
  HostConfig?: { NetworkMode?: string };
  NetworkSettings: {
    SandboxKey?: string;
    Ports?: Readonly<Record<string, ReadonlyArray<{ HostIp?: string; HostPort?: string }> | null>> | null;
    Networks?: Readonly<Record<string, DockerEndpointSettings>> | null;
  };
}

/** `GET /containers/json` entries. */
export interface DockerContainerSummary {
  Id: string;
  Names?: string[];
  State?: string;
}

/** One line of `GET /events`. */
export interface DockerEvent {
  Type: string;
  Action: string;
  Actor?: { ID?: string; Attributes?: Readonly<Record<string, string>> };
  time?: number;
  timeNano?: number;
}

/** `GET /info`, the fields berth reads (doctor). */
export interface DockerInfo {
  ServerVersion?: string;
  LiveRestoreEnabled?: boolean;
  /** Docker 28+: which firewall backend dockerd programs */
  FirewallBackend?: { Driver?: string };
}

export class DockerApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`docker ${method} ${path}: HTTP ${status}${body ? `: ${body.trim().slice(0, 300)}` : ''}`);
    this.name = 'DockerApiError';
  }
}

export interface DockerClientOptions {
  socketPath?: string;
  /** per-request timeout for ordinary calls (ms, default 10000) */
  timeoutMs?: number;
}

export class DockerClient {
  readonly socketPath: string;
  private readonly agent: Agent;
  private readonly timeoutMs: number;

  constructor(opts: DockerClientOptions = {}) {
    this.socketPath = opts.socketPath ?? DEFAULT_DOCKER_SOCKET;
    this.timeoutMs = opts.timeoutMs ?? 10000;
    this.agent = new Agent({ connect: { socketPath: this.socketPath }, keepAliveTimeout: 4000 });
  }

  private async getJson<T>(path: string): Promise<T> {
    const res = await request(`http://docker${path}`, {
      method: 'GET',
      dispatcher: this.agent,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new DockerApiError('GET', path, res.statusCode, text);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new Error(`docker GET ${path}: invalid JSON: ${(e as Error).message}`);
    }
  }

  /** `GET /_ping`: true when the daemon answers. */
  async ping(): Promise<boolean> {
    try {
      const res = await request('http://docker/_ping', { dispatcher: this.agent, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs });
      await res.body.text();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  }

  async version(): Promise<{ Version: string; ApiVersion: string }> {
    return this.getJson('/version');
  }

  async info(): Promise<DockerInfo> {
    return this.getJson('/info');
  }

  async networks(): Promise<DockerNetwork[]> {
    return this.getJson('/networks');
  }

  async network(id: string): Promise<DockerNetwork> {
    return this.getJson(`/networks/${encodeURIComponent(id)}`);
  }

  /** Running containers only (what has a network namespace). */
  async containers(): Promise<DockerContainerSummary[]> {
    return this.getJson('/containers/json');
  }

  /** null when the container is gone (404). */
  async container(id: string): Promise<DockerContainer | null> {
    try {
      return await this.getJson<DockerContainer>(`/containers/${encodeURIComponent(id)}/json`);
    } catch (e) {
      if (e instanceof DockerApiError && e.status === 404) return null;
      throw e;
    }
  }

  /**
   * Follow `GET /events` (containers and networks). Calls onEvent per line
   * until the stream ends or fails; resolves when it ends, rejects on error.
   * `signal` aborts it (resolves).
   */
  async events(onEvent: (e: DockerEvent) => void, opts: { signal?: AbortSignal; onOpen?: () => void } = {}): Promise<void> {
    const filters = encodeURIComponent(JSON.stringify({ type: ['container', 'network'] }));
    const path = `/events?filters=${filters}`;
    let res;
    try {
      res = await request(`http://docker${path}`, {
        method: 'GET',
        dispatcher: this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: 0, // a quiet daemon sends nothing for hours
        signal: opts.signal,
      });
    } catch (e) {
      if (opts.signal?.aborted) return;
      throw e;
    }
    if (res.statusCode !== 200) throw new DockerApiError('GET', path, res.statusCode, await res.body.text());
    opts.onOpen?.();
    const body = res.body as unknown as Readable;
    let buf = '';
    try {
      for await (const chunk of body) {
        buf += (chunk as Buffer).toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let ev: DockerEvent;
          try {
            ev = JSON.parse(line) as DockerEvent;
          } catch {
            continue; // a torn line cannot happen on a sane stream; skip it
          }
          onEvent(ev);
        }
      }
    } catch (e) {
      if (opts.signal?.aborted) return;
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }

  /** Close at once, aborting open requests (the event stream). */
  async destroy(): Promise<void> {
    await this.agent.destroy().catch(() => undefined);
  }
}
