/**
 * @module latin1
 * Bytes as a latin1 string (one char per byte): how every protocol part
 * carries header names, values and CGI variables.
 */

/** Buffer#latin1Slice where Node has it (all supported versions do): toString('latin1') without its argument handling. */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (start: number, end: number) => string }).latin1Slice;

/** The bytes [start, end) of `b` as a latin1 string. */
export function latin1(b: Buffer, start = 0, end = b.length): string {
  return latin1Slice !== undefined ? latin1Slice.call(b, start, end) : b.toString('latin1', start, end);
}
