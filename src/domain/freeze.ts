/**
 * The one deep freeze of the domain: what berth is told (the config file, the
 * user policy) is frozen whole before any side effect, so nothing later can
 * change it behind the validator's back.
 *
 * Every object and array reachable from the value is frozen, each once (a
 * value met twice, shared or in a cycle, is visited once), also below an
 * object that was already frozen on its own (DEFAULT_SETTINGS' sections are:
 * a shallow freeze must not stop the walk). Buffers and other array-buffer
 * views cannot be frozen (the engine throws for one with elements); the
 * domain never holds one, and one met here is an error, not a silent hole.
 */
export function deepFreeze<T>(value: T): T {
  const seen = new Set<object>();
  const walk = (v: unknown): void => {
    if (typeof v !== 'object' || v === null || seen.has(v)) return;
    if (ArrayBuffer.isView(v)) throw new TypeError('deepFreeze: a Buffer or typed array cannot be frozen');
    seen.add(v);
    Object.freeze(v);
    for (const k of Object.keys(v)) walk((v as Record<string, unknown>)[k]);
  };
  walk(value);
  return value;
}
