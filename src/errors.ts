/**
 * @module errors
 * The base class every gatehouse error extends. Callers and tests match on
 * `code` (a stable string literal), never on message text.
 */
export class GatehouseError<C extends string = string> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** True when `err` is an Error carrying the given `code` (also works for Node's errno errors). */
export function hasCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
